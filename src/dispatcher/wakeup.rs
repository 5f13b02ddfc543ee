//! The wake-up protocol between the worker's loop and what makes work for
//! it. The loop sleeps until the next delivery is due, or until woken:
//! - by ingestion and the service's changes ([`Wakeup::wake`]): something
//!   may be due now;
//! - by the recorder after each transaction ([`Wakeup::recorded`]), but only
//!   when it may matter: it made new work (a retry scheduled, a chain's next
//!   handler made due), or the loop's last look left due work unclaimed
//!   (waiting on room or on its turn, which a finished attempt gives). At a
//!   low rate that is one claim an event instead of two.
//!
//! A recording during a look may find "behind" not yet set and not wake the
//! loop; the look then sees the recording count moved and looks again
//! ([`Wakeup::look_ended`]). So no recording is missed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use tokio::sync::Notify;

pub(crate) struct Wakeup {
    notify: Notify,
    /// Whether the loop's last look left due deliveries unclaimed.
    behind: AtomicBool,
    /// Recorder transactions so far.
    recorded: AtomicU64,
}

/// One look at due work, from its start.
pub(crate) struct Look {
    records_before: u64,
}

impl Wakeup {
    /// At a start the loop is behind: whatever is due is unclaimed.
    pub(crate) fn new() -> Self {
        Self { notify: Notify::new(), behind: AtomicBool::new(true), recorded: AtomicU64::new(0) }
    }

    /// Something may be due now. A wake while the loop is not waiting is
    /// kept for its next wait.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits for a wake (or the one kept since the last wait).
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }

    pub(crate) fn look_started(&self) -> Look {
        Look { records_before: self.recorded.load(SeqCst) }
    }

    /// The look claimed all it could take and more may be due: behind.
    pub(crate) fn left_work(&self) {
        self.behind.store(true, SeqCst);
    }

    /// The look ended, leaving due work unclaimed or not (`behind`); whether
    /// to look again at once: behind, and an attempt was recorded meanwhile
    /// (its recorder may have seen the old `behind` and not woken the loop).
    pub(crate) fn look_ended(&self, look: &Look, behind: bool) -> bool {
        self.behind.store(behind, SeqCst);
        behind && self.recorded.load(SeqCst) != look.records_before
    }

    /// A recorder transaction committed; `news`: it made new work.
    pub(crate) fn recorded(&self, news: bool) {
        self.recorded.fetch_add(1, SeqCst);
        if news || self.behind.load(SeqCst) {
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// Whether a wake is waiting: `woken` completes at its first poll only then.
    fn has_wake(w: &Wakeup) -> bool {
        let fut = std::pin::pin!(w.woken());
        let waker = std::task::Waker::noop();
        fut.poll(&mut std::task::Context::from_waker(waker)).is_ready()
    }

    #[test]
    fn a_wake_is_kept_for_the_next_wait_once() {
        let w = Wakeup::new();
        assert!(!has_wake(&w));
        w.wake();
        w.wake();
        assert!(has_wake(&w));
        assert!(!has_wake(&w), "two wakes before a wait are one");
    }

    #[test]
    fn a_recording_wakes_the_loop_only_when_behind_or_with_news() {
        let w = Wakeup::new();
        let look = w.look_started();
        assert!(!w.look_ended(&look, false));
        w.recorded(false);
        assert!(!has_wake(&w), "nothing left behind, nothing new: no wake");
        w.recorded(true);
        assert!(has_wake(&w), "a retry scheduled or a chain's next made due");
        let look = w.look_started();
        assert!(!w.look_ended(&look, true));
        w.recorded(false);
        assert!(has_wake(&w), "due work was left unclaimed: a finished attempt may free it");
    }

    #[test]
    fn a_recording_during_a_look_that_left_work_makes_it_look_again() {
        let w = Wakeup::new();
        assert!(!w.look_ended(&w.look_started(), false));
        let look = w.look_started();
        w.recorded(false); // saw behind = false: no wake
        assert!(!has_wake(&w));
        assert!(w.look_ended(&look, true), "look again at once");
        let look = w.look_started();
        w.recorded(false);
        assert!(!w.look_ended(&look, false), "nothing was left: no need");
    }

    #[test]
    fn at_a_start_the_loop_is_behind() {
        let w = Wakeup::new();
        w.recorded(false);
        assert!(has_wake(&w));
    }
}
