//! The delivery lifecycle (DESIGN §4): its states, the outcomes of an
//! attempt, and the one transition an attempt's result makes. Pure: the
//! database layer stores these as text, the dispatcher produces outcomes.

use std::time::Duration;

use serde::Serialize;

use super::RetrySchedule;

/// Where a delivery is in its life (`deliveries.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting: for its turn (its object, its chain), a retry, or room.
    Pending,
    /// Claimed by a process and being attempted, under its lease.
    InFlight,
    Succeeded,
    /// Failed for good: its last allowed attempt failed.
    Failed,
    /// Its handler was disabled or archived before it could succeed.
    Cancelled,
}

text_enum!(DeliveryState "delivery state" {
    Pending => "pending",
    InFlight => "in_flight",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl DeliveryState {
    /// Whether nothing more will happen to it unless someone retries it.
    pub fn is_finished(self) -> bool {
        matches!(self, DeliveryState::Succeeded | DeliveryState::Failed | DeliveryState::Cancelled)
    }

    /// The state a manual retry leads to: a finished delivery is pending
    /// again (one more attempt); an unfinished one cannot be retried.
    pub fn manual_retry(self) -> Option<DeliveryState> {
        self.is_finished().then_some(DeliveryState::Pending)
    }
}

/// How one attempt ended (`execution_logs.outcome`, DESIGN §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    HttpError,
    Timeout,
    ConnectionError,
    ScriptError,
    Cancelled,
    /// The attempt started (the handler may have seen it) and ended without
    /// a result: its process was killed, or stopped past its grace, or its
    /// lease was taken over. Written by the database layer, never by an attempt.
    Interrupted,
}

text_enum!(Outcome "outcome" {
    Success => "success",
    HttpError => "http_error",
    Timeout => "timeout",
    ConnectionError => "connection_error",
    ScriptError => "script_error",
    Cancelled => "cancelled",
    Interrupted => "interrupted",
});

impl Outcome {
    /// How the logs show it.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Interrupted => "interrupted (no result recorded)",
            other => other.as_str(),
        }
    }

    /// Whether an attempt with this outcome failed (a cancellation is no attempt).
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Success | Outcome::Cancelled)
    }
}

/// What an attempt's result makes of its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterAttempt {
    pub state: DeliveryState,
    /// For a retry: how long until the next attempt.
    pub retry_in: Option<Duration>,
    /// Why a failure is not retried although it could have been.
    pub not_retried: Option<&'static str>,
}

/// The transition after attempt number `attempt` (1-based) of a delivery
/// allowed `max_attempts`, whose handler is (still) `handler_enabled`. The
/// schedule's k-th delay follows the k-th attempt; a manual retry allows one
/// attempt more than were made, so it is never retried on its own.
pub fn after_attempt(
    outcome: Outcome,
    attempt: i32,
    max_attempts: i32,
    handler_enabled: bool,
    schedule: &RetrySchedule,
) -> AfterAttempt {
    let end = |state| AfterAttempt { state, retry_in: None, not_retried: None };
    match outcome {
        Outcome::Success => end(DeliveryState::Succeeded),
        Outcome::Cancelled => end(DeliveryState::Cancelled),
        _ if !handler_enabled => AfterAttempt {
            not_retried: Some("not retried: the handler is no longer enabled"),
            ..end(DeliveryState::Cancelled)
        },
        _ if attempt < max_attempts => {
            match schedule.jittered_delay_after(u32::try_from(attempt).unwrap_or(u32::MAX)) {
                Some(delay) => AfterAttempt { retry_in: Some(delay), ..end(DeliveryState::Pending) },
                None => end(DeliveryState::Failed),
            }
        }
        _ => end(DeliveryState::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::parse("10s,1m").unwrap()
    }

    fn after(outcome: Outcome, attempt: i32, max: i32, enabled: bool) -> AfterAttempt {
        after_attempt(outcome, attempt, max, enabled, &schedule())
    }

    fn ended(state: DeliveryState) -> AfterAttempt {
        AfterAttempt { state, retry_in: None, not_retried: None }
    }

    #[test]
    fn a_success_ends_it() {
        assert_eq!(after(Outcome::Success, 1, 3, true), ended(DeliveryState::Succeeded));
        assert_eq!(after(Outcome::Success, 3, 3, false), ended(DeliveryState::Succeeded), "even if disabled since");
    }

    #[test]
    fn a_cancellation_cancels() {
        assert_eq!(after(Outcome::Cancelled, 1, 3, false), ended(DeliveryState::Cancelled));
    }

    #[test]
    fn a_failure_of_a_handler_gone_is_cancelled_and_says_why() {
        let a = after(Outcome::HttpError, 1, 3, false);
        assert_eq!((a.state, a.retry_in), (DeliveryState::Cancelled, None));
        assert!(a.not_retried.unwrap().contains("no longer enabled"));
    }

    #[test]
    fn a_failure_with_retries_left_waits_for_the_schedule() {
        for (attempt, delay) in [(1, 10.0), (2, 60.0)] {
            let a = after(Outcome::Timeout, attempt, 3, true);
            assert_eq!(a.state, DeliveryState::Pending);
            let secs = a.retry_in.unwrap().as_secs_f64();
            assert!((delay * 0.9..=delay * 1.1).contains(&secs), "attempt {attempt}: {secs} s");
        }
    }

    #[test]
    fn a_failure_of_the_last_attempt_fails_for_good() {
        assert_eq!(after(Outcome::ConnectionError, 3, 3, true), ended(DeliveryState::Failed));
        let short = RetrySchedule::parse("").unwrap();
        assert_eq!(after_attempt(Outcome::ScriptError, 1, 1, true, &short).state, DeliveryState::Failed);
    }

    #[test]
    fn a_manual_retry_gets_one_attempt_only() {
        // A delivery failed after 3 attempts and retried by hand is allowed 4.
        assert_eq!(DeliveryState::Failed.manual_retry(), Some(DeliveryState::Pending));
        assert_eq!(after(Outcome::HttpError, 4, 4, true), ended(DeliveryState::Failed));
        assert_eq!(after(Outcome::Success, 4, 4, true).state, DeliveryState::Succeeded);
    }

    #[test]
    fn only_finished_deliveries_can_be_retried_by_hand() {
        for state in DeliveryState::ALL {
            assert_eq!(state.manual_retry().is_some(), state.is_finished(), "{state}");
        }
        assert!(!DeliveryState::InFlight.is_finished() && !DeliveryState::Pending.is_finished());
    }

    #[test]
    fn unknown_text_is_an_error_not_a_default() {
        assert_eq!("in_flight".parse::<DeliveryState>().unwrap(), DeliveryState::InFlight);
        let e = "paused".parse::<DeliveryState>().unwrap_err();
        assert_eq!(e.to_string(), "unknown delivery state `paused`");
        assert!("".parse::<Outcome>().is_err());
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>().unwrap(), *outcome);
        }
    }
}
