//! provisiond: a self-hosted Provisioning API server. Billing events come in over
//! `/api/v1`; administrators choose in the browser which handlers receive them.

pub mod api;
pub mod app;
pub mod catalogue;
pub mod config;
pub mod db;
pub mod dispatcher;
pub mod domain;
pub mod error;
pub mod ingest;
pub mod maintenance;
pub mod security;
pub mod web;
