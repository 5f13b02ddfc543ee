//! The retry schedule: pure, no I/O.

use std::{fmt, time::Duration};

use rand::Rng;

use crate::domain::duration::parse_duration;

/// Delays between attempts: a schedule of k delays gives at most 1 + k attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// Reads `5s,30s,2m`; an empty string means "never retry".
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self(Vec::new()));
        }
        text.split(',').map(parse_duration).collect::<Result<_, _>>().map(Self)
    }

    /// Its longest delay (zero when it never retries).
    pub fn longest(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }

    /// The most attempts a delivery gets.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The delay before the attempt after `attempt` (1-based), or `None` when
    /// `attempt` was the last one.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        self.0.get(usize::try_from(attempt).ok()?.checked_sub(1)?).copied()
    }

    /// The delay with up to ±10 % of random jitter, so that deliveries failed
    /// together do not all come back at the same instant.
    pub fn jittered_delay_after(&self, attempt: u32) -> Option<Duration> {
        let delay = self.delay_after(attempt)?;
        let factor = rand::thread_rng().gen_range(0.9..=1.1);
        Some(delay.mul_f64(factor))
    }
}

/// As it is written (and read back): each delay in the largest unit that
/// divides it, `5s,30s,2m,1h,500ms`.
impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |d: &Duration| {
            let ms = d.as_millis();
            match ms {
                0 => "0s".to_owned(),
                ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
                ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
                ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
                ms => format!("{ms}ms"),
            }
        };
        let parts: Vec<String> = self.0.iter().map(part).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_delays_give_k_plus_one_attempts() {
        let s = RetrySchedule::parse("1s,2s,500ms").unwrap();
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.delay_after(1), Some(Duration::from_secs(1)));
        assert_eq!(s.delay_after(3), Some(Duration::from_millis(500)));
        assert_eq!(s.delay_after(4), None);
        assert_eq!(s.delay_after(0), None);
    }

    #[test]
    fn empty_schedule_never_retries() {
        let s = RetrySchedule::parse("").unwrap();
        assert_eq!(s.max_attempts(), 1);
        assert_eq!(s.delay_after(1), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let s = RetrySchedule::parse("10s").unwrap();
        for _ in 0..100 {
            let d = s.jittered_delay_after(1).unwrap();
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11), "{d:?}");
        }
    }

    #[test]
    fn is_written_as_it_is_read() {
        let s = RetrySchedule::parse("5s, 90s,2m,1h,1500ms,3600s").unwrap();
        assert_eq!(s.to_string(), "5s,90s,2m,1h,1500ms,1h");
        assert_eq!(RetrySchedule::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn refuses_a_bad_part() {
        assert!(RetrySchedule::parse("5s,,2m").is_err());
        assert!(RetrySchedule::parse("5s,soon").is_err());
    }
}
