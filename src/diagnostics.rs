//! How errors are written to the server's log.

use std::fmt::Write as _;

/// A URL as it may be shown or logged: its password, if any, replaced by
/// `***` (`postgres://app:***@db/billing`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/billing?x=1"), "postgres://app:***@db:5432/billing?x=1");
        assert_eq!(redact_url("mysql://u:p@ss@host/db"), "mysql://u:***@host/db");
        assert_eq!(redact_url("postgres://app@db/billing"), "postgres://app@db/billing");
        assert_eq!(redact_url("sqlite://provisiond.db"), "sqlite://provisiond.db");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b", "an @ in the path is not user info");
    }
}
