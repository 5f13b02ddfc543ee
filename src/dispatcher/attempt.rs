//! A claimed delivery made an attempt: what to call, and for how long.

use std::time::Duration;

use crate::{
    db::claims::Claimed,
    domain::{HandlerStatus, HandlerType},
};

/// What one attempt does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Http,
    Script,
    /// The handler left `enabled` after the claim: the attempt ends the
    /// delivery as cancelled, calling nothing.
    Cancel(String),
}

/// One attempt of a claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub call: Call,
    /// Counted at the claim (an attempt cut off is still counted).
    pub number: i32,
    pub timeout: Duration,
}

impl Attempt {
    /// The handler as it is now decides: an edit applies to the next attempt.
    pub(crate) fn of(delivery: &Claimed) -> Self {
        let call = match (delivery.handler_status, delivery.handler_type) {
            // Paused after its claim: the claim was made, the attempt goes on.
            (HandlerStatus::Enabled | HandlerStatus::Paused, HandlerType::Http) => Call::Http,
            (HandlerStatus::Enabled | HandlerStatus::Paused, HandlerType::Script) => Call::Script,
            (status, _) => Call::Cancel(format!("cancelled: the handler is {status}")),
        };
        // Stored within the form's bounds (100 ms to 300 s); a row out of
        // them (written by hand) gets the smallest.
        let timeout = Duration::from_millis(u64::try_from(delivery.timeout_ms).unwrap_or(0).max(100));
        Self { call, number: delivery.attempts, timeout }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(status: HandlerStatus, handler_type: HandlerType, timeout_ms: i32) -> Claimed {
        Claimed {
            id: 1,
            event_id: 1,
            handler_id: 1,
            webhook_id: "msg_1".into(),
            entity: "clients".into(),
            object_id: "7".into(),
            attempts: 3,
            max_attempts: 9,
            first_attempt_done: true,
            events_id: "clients.create".into(),
            payload: "{}".into(),
            handler_type,
            target: "http://127.0.0.1:9/".into(),
            secret: "whsec_x".into(),
            previous_secret: None,
            previous_secret_until: None,
            timeout_ms,
            handler_status: status,
            retry_schedule: None,
            rate_limit_milli: None,
            not_before: None,
            handler_failing: false,
        }
    }

    #[test]
    fn the_handler_as_it_is_now_decides_the_call() {
        let http = Attempt::of(&claimed(HandlerStatus::Enabled, HandlerType::Http, 2500));
        assert_eq!(http, Attempt { call: Call::Http, number: 3, timeout: Duration::from_millis(2500) });
        assert_eq!(Attempt::of(&claimed(HandlerStatus::Enabled, HandlerType::Script, 100)).call, Call::Script);
        for status in [HandlerStatus::Disabled, HandlerStatus::Archived] {
            let call = Attempt::of(&claimed(status, HandlerType::Http, 100)).call;
            assert_eq!(call, Call::Cancel(format!("cancelled: the handler is {status}")));
        }
    }

    #[test]
    fn a_timeout_out_of_bounds_gets_the_smallest() {
        let timeout = |ms| Attempt::of(&claimed(HandlerStatus::Enabled, HandlerType::Http, ms)).timeout;
        assert_eq!(timeout(-5), Duration::from_millis(100));
        assert_eq!(timeout(0), Duration::from_millis(100));
        assert_eq!(timeout(300_000), Duration::from_secs(300));
    }
}
