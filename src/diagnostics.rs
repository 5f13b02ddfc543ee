//! How errors are written to the server's log.

use std::fmt::Write as _;

/// The text of an error and all its causes, for the server log.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string().trim_end().to_owned();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        let cause_text = cause_text.trim_end();
        // Wrappers often repeat their cause in their own message; say it once.
        if !text.contains(cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}
