//! What one attempt came to, before it is recorded.

use std::time::Duration;

pub use crate::domain::Outcome;

/// The largest response body or script output kept in a log row.
pub const MAX_CAPTURE: usize = 64 * 1024;

/// One finished attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub outcome: Outcome,
    /// HTTP status, or the script's exit code.
    pub status_code: Option<i32>,
    /// The response body or the script's output, at most [`MAX_CAPTURE`] bytes.
    pub response: String,
    pub error: Option<String>,
    /// The headers sent (HTTP) or the environment given (script).
    pub request_headers: Vec<(String, String)>,
    pub duration: Duration,
    /// The answer's `Retry-After` (429, 502, 503, 504), as a wait from now, uncapped.
    pub retry_after: Option<Duration>,
}

/// What the handler answered, or why there was no answer: the part of an
/// attempt its call decides. [`Answer::sent`] makes the attempt complete.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outcome: Outcome,
    pub status_code: Option<i32>,
    pub response: String,
    pub error: Option<String>,
    /// The answer's `Retry-After`, when it means "slow down" (DESIGN §8.2).
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn success(status_code: i32, response: String) -> Self {
        Self { outcome: Outcome::Success, status_code: Some(status_code), response, error: None, retry_after: None }
    }

    pub fn failure(outcome: Outcome, status_code: Option<i32>, response: String, error: String) -> Self {
        Self { outcome, status_code, response, error: Some(error), retry_after: None }
    }

    /// The attempt: this answer to what was sent (`request_headers`), after `duration`.
    pub fn sent(self, request_headers: Vec<(String, String)>, duration: Duration) -> AttemptResult {
        let Answer { outcome, status_code, response, error, retry_after } = self;
        AttemptResult { outcome, status_code, response, error, request_headers, duration, retry_after }
    }
}

impl AttemptResult {
    pub fn cancelled(reason: &str) -> Self {
        Self {
            outcome: Outcome::Cancelled,
            status_code: None,
            response: String::new(),
            error: Some(reason.to_owned()),
            request_headers: Vec::new(),
            duration: Duration::ZERO,
            retry_after: None,
        }
    }
}

/// Collects up to [`MAX_CAPTURE`] bytes, noting what was cut.
#[derive(Debug, Default)]
pub struct Capture {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    pub fn push(&mut self, chunk: &[u8]) {
        let room = MAX_CAPTURE.saturating_sub(self.bytes.len());
        let take = room.min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..take]);
        self.dropped += chunk.len() - take;
    }

    pub fn is_full(&self) -> bool {
        self.bytes.len() >= MAX_CAPTURE
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The text kept, cut at a character boundary, as any database can
    /// store it: invalid UTF-8 shown as U+FFFD (�) and NUL bytes as U+2400
    /// (␀), with a last line that says so.
    pub fn into_text(mut self) -> String {
        // A character cut by the size limit is dropped, not shown as invalid.
        if let Err(e) = std::str::from_utf8(&self.bytes)
            && e.error_len().is_none()
        {
            self.bytes.truncate(e.valid_up_to());
        }
        let nuls = self.bytes.iter().filter(|b| **b == 0).count();
        let lossy = String::from_utf8_lossy(&self.bytes);
        let invalid = matches!(lossy, std::borrow::Cow::Owned(_));
        let mut text = lossy.replace('\0', "\u{2400}");
        while text.len() > MAX_CAPTURE {
            text.pop();
        }
        let mut notes = Vec::new();
        if nuls > 0 {
            notes.push(format!("{nuls} NUL byte{} shown as ␀", if nuls == 1 { "" } else { "s" }));
        }
        if invalid {
            notes.push("bytes that are not UTF-8 shown as �".to_owned());
        }
        if !notes.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[provisiond: {}]", notes.join("; ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_64_kib() {
        let mut c = Capture::default();
        c.push(&[b'a'; 40 * 1024]);
        assert!(!c.is_full());
        c.push(&[b'b'; 40 * 1024]);
        assert!(c.is_full());
        let text = c.into_text();
        assert_eq!(text.len(), MAX_CAPTURE);
        assert!(text.ends_with('b') && text.starts_with('a'));
    }

    #[test]
    fn capture_shows_nul_bytes_and_invalid_utf8_and_says_so() {
        let mut c = Capture::default();
        c.push(b"ok\0x\0\xff");
        let text = c.into_text();
        assert!(!text.contains('\0'), "{text:?}");
        assert_eq!(
            text,
            "ok\u{2400}x\u{2400}\u{FFFD}\n[provisiond: 2 NUL bytes shown as ␀; bytes that are not UTF-8 shown as �]"
        );
        let mut plain = Capture::default();
        plain.push(b"{\"ok\":true}");
        assert_eq!(plain.into_text(), "{\"ok\":true}", "nothing added to a clean answer");
    }

    #[test]
    fn capture_survives_a_cut_multibyte_character() {
        let mut c = Capture::default();
        c.push(&vec![b'x'; MAX_CAPTURE - 1]);
        c.push("é".as_bytes());
        let text = c.into_text();
        assert!(text.len() <= MAX_CAPTURE);
        assert!(text.starts_with("xxx"));
    }
}
