//! What one attempt came to, before it is recorded.

use std::time::Duration;

/// The largest response body or script output kept in a log row.
pub const MAX_CAPTURE: usize = 64 * 1024;

/// The outcome column of an execution log (DESIGN §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    HttpError,
    Timeout,
    ConnectionError,
    ScriptError,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::HttpError => "http_error",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionError => "connection_error",
            Outcome::ScriptError => "script_error",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::HttpError,
        Outcome::Timeout,
        Outcome::ConnectionError,
        Outcome::ScriptError,
        Outcome::Cancelled,
    ];
}

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

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The text kept (invalid UTF-8 replaced), cut at a character boundary.
    pub fn into_text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        while text.len() > MAX_CAPTURE {
            text.pop();
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
    fn capture_survives_a_cut_multibyte_character() {
        let mut c = Capture::default();
        c.push(&vec![b'x'; MAX_CAPTURE - 1]);
        c.push("é".as_bytes());
        let text = c.into_text();
        assert!(text.len() <= MAX_CAPTURE);
        assert!(text.starts_with("xxx"));
    }
}
