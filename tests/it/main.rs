//! One integration binary: one link step on 2 cores.

mod helpers;
mod proxy;
mod sink;

mod access;
mod alerts;
mod answers;
mod auth;
mod browser;
mod browser_ops;
mod claims;
mod deliveries;
mod dispatch;
mod durability;
mod faults;
mod handlers_api;
mod handlers_ui;
mod headers;
mod hostile;
mod ingest;
mod jobs;
mod logs_ui;
mod openapi;
mod ordering;
mod pause;
mod rate;
mod scripts;
mod startup;
mod statistics;
mod targets;
mod test_events;
mod wakes;
