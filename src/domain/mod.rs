//! Pure domain types and validation: what a handler may be, before any storage.

pub mod duration;
pub mod envelope;
pub mod handler;
pub mod target;

pub use handler::{FieldErrors, HandlerForm, HandlerStatus, HandlerType, ValidHandler};
