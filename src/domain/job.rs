//! Bulk jobs (DESIGN §8.5): a retry of many deliveries, or a replay of many
//! events to one handler, run in the background.

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// One more attempt for every finished (or retrying) delivery a
    /// deliveries filter matches.
    Retry,
    /// A new delivery to one handler of every event an events filter matches.
    Replay,
}

text_enum!(JobKind "job kind" {
    Retry => "retry",
    Replay => "replay",
});

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Done,
    Cancelled,
}

text_enum!(JobState "job state" {
    Running => "running",
    Done => "done",
    Cancelled => "cancelled",
});
