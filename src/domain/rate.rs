//! A handler's rate limit (DESIGN §8.1): at most so many attempts a second,
//! counted across every process sharing the database. The claim hands out
//! start times spaced one interval apart (see `db::claims`), so the limit
//! holds over any window, not only on average over a second.

use std::{fmt, str::FromStr, time::Duration};

/// The lowest limit: one attempt every ten seconds.
pub const RATE_MIN_MILLI: u32 = 100;
/// The highest limit: ten thousand attempts a second.
pub const RATE_MAX_MILLI: u32 = 10_000_000;

/// Attempts per second, in thousandths (0.1 to 10000, at most three decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RateLimit(u32);

impl RateLimit {
    /// From thousandths of an attempt a second, as stored; `None` outside the bounds.
    pub fn from_milli(milli: i32) -> Option<Self> {
        u32::try_from(milli).ok().filter(|m| (RATE_MIN_MILLI..=RATE_MAX_MILLI).contains(m)).map(Self)
    }

    /// Thousandths of an attempt a second, as stored.
    pub fn milli(self) -> i32 {
        // At most RATE_MAX_MILLI.
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }

    pub fn per_second(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// The time between two attempts' starts.
    pub fn interval(self) -> Duration {
        Duration::from_nanos(1_000_000_000_000 / u64::from(self.0))
    }
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (whole, decimals) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && decimals.is_empty() || !digits(whole) || !digits(decimals) || decimals.len() > 3 {
            return Err(rule());
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| rule())? };
        let fraction: u64 = format!("{decimals:0<3}").parse().map_err(|_| rule())?;
        let milli = whole.checked_mul(1000).and_then(|w| w.checked_add(fraction)).ok_or_else(rule)?;
        u32::try_from(milli).ok().filter(|m| (RATE_MIN_MILLI..=RATE_MAX_MILLI).contains(m)).map(Self).ok_or_else(rule)
    }
}

fn rule() -> String {
    "Enter attempts per second from 0.1 to 10000 (at most three decimals), or leave it blank for no limit".into()
}

impl fmt::Display for RateLimit {
    /// `50`, `0.5`, `12.125`: no trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 1000, self.0 % 1000);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let decimals = format!("{fraction:03}");
        write!(f, "{whole}.{}", decimals.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_attempts_per_second() {
        for (text, shown, interval_ms) in [
            ("50", "50", 20.0),
            ("0.1", "0.1", 10_000.0),
            (".5", "0.5", 2_000.0),
            ("10000", "10000", 0.1),
            (" 12.125 ", "12.125", 1000.0 / 12.125),
        ] {
            let rate: RateLimit = text.parse().unwrap();
            assert_eq!(rate.to_string(), shown);
            assert!((rate.interval().as_secs_f64() * 1000.0 - interval_ms).abs() < 1e-6, "{text}");
            assert_eq!(RateLimit::from_milli(rate.milli()), Some(rate));
        }
    }

    #[test]
    fn refuses_what_is_no_rate_within_the_bounds() {
        for text in
            ["", ".", "0", "0.09", "10000.001", "1e3", "-5", "5/s", "1.2345", "99999999999999999999", "5\0", "٥"]
        {
            assert!(text.parse::<RateLimit>().is_err(), "{text:?}");
        }
        for milli in [-1, 0, 99, 10_000_001, i32::MAX] {
            assert_eq!(RateLimit::from_milli(milli), None, "{milli}");
        }
    }
}
