//! The dispatcher: delivers every event to its handlers (DESIGN §4).

pub mod retry;
pub mod signing;
