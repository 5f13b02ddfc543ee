//! The HTTP call of a handler (DESIGN §4.5): POST the envelope, signed with
//! the Standard Webhooks headers; success is any 2xx within the timeout.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{
    Client,
    dns::{Addrs, Name, Resolve, Resolving},
    header,
};

use super::outcome::{Answer, AttemptResult, Capture, Outcome};
use crate::{
    db::claims::Claimed,
    domain::{signing::sign_all, target::DenyList},
};

pub const USER_AGENT: &str = concat!("provisiond/", env!("CARGO_PKG_VERSION"));

/// The client every HTTP handler shares: connections are kept alive and
/// reused per host; redirects are not followed; a name is resolved, its
/// denied addresses dropped, and only the rest connected to (DESIGN §8.4).
pub fn client(deny: &DenyList) -> Result<Client, reqwest::Error> {
    let resolver = CheckedResolver { deny: Arc::new(deny.clone()) };
    let builder = || {
        Client::builder()
            .dns_resolver(resolver.clone())
            .redirect(reqwest::redirect::Policy::none())
            // Under the idle timeout of common servers (Node's and actix's
            // 5 s): a connection the endpoint is closing is never picked
            // for an attempt, which would fail it with a connection error.
            .pool_idle_timeout(Duration::from_secs(4))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            // One attempt is one request: no hidden retry inside it (and no
            // copy of every request kept for one).
            .retry(reqwest::retry::never().max_retries_per_request(0))
    };
    builder().build().or_else(|e| {
        // A machine without a CA store (no ca-certificates package) still
        // serves http:// handlers; https:// ones fail their attempts with a
        // certificate error until the store is installed.
        tracing::warn!(
            error = %crate::diagnostics::cause_chain(&e),
            "no CA certificates on this system: https:// handlers will fail until they are installed"
        );
        builder().tls_certs_only(Vec::new()).build()
    })
}

/// Resolves a target's host name and keeps only the addresses the deny list
/// allows: the connection goes to an address that was checked, so a name
/// that resolves differently at connect time (DNS rebinding) cannot slip by.
#[derive(Clone)]
struct CheckedResolver {
    deny: Arc<DenyList>,
}

/// A name that resolved only into denied ranges.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {address}, in a range PROVISIOND_DENY_TARGETS denies: no attempt may connect to it")]
struct DeniedAddress {
    host: String,
    address: std::net::IpAddr,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let deny = self.deny.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|a| !deny.denies(a.ip())).collect();
            match (allowed.is_empty(), resolved.first()) {
                (true, Some(denied)) => Err(Box::new(DeniedAddress { host, address: denied.ip() }).into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// One attempt: the request is prepared once, and what is logged as sent is
/// read from it. A target whose host is a denied literal address (the deny
/// list may have changed since it was saved) fails without a connection.
pub async fn call(client: &Client, deny: &DenyList, delivery: &Claimed, timeout: Duration) -> AttemptResult {
    let started = Instant::now();
    if let Some(reason) = url::Url::parse(&delivery.target).ok().and_then(|url| deny.refusal(&url)) {
        let answer = Answer::failure(Outcome::ConnectionError, None, String::new(), format!("{reason}: not attempted"));
        return answer.sent(Vec::new(), started.elapsed());
    }
    let request = match prepare(client, delivery, timeout) {
        Ok(request) => request,
        Err(e) => {
            let answer = Answer::failure(Outcome::ConnectionError, None, String::new(), describe(&e));
            return answer.sent(Vec::new(), started.elapsed());
        }
    };
    let sent: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let answer = send(client, request, timeout).await;
    answer.sent(sent, started.elapsed())
}

/// The signed POST of DESIGN §4.5, with every header set on the request
/// itself (none added by the client later), so it is what the log shows.
fn prepare(client: &Client, delivery: &Claimed, timeout: Duration) -> Result<reqwest::Request, reqwest::Error> {
    let now = chrono::Utc::now();
    let (timestamp, secrets) = (now.timestamp(), delivery.signing_secrets(now.naive_utc()));
    let signature = sign_all(&secrets, &delivery.webhook_id, timestamp, delivery.payload.as_bytes());
    client
        .post(&delivery.target)
        .timeout(timeout)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .header("webhook-id", &delivery.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .build()
}

async fn send(client: &Client, request: reqwest::Request, timeout: Duration) -> Answer {
    let mut response = match client.execute(request).await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return Answer::failure(Outcome::Timeout, None, String::new(), timed_out(timeout)),
        Err(e) => return Answer::failure(Outcome::ConnectionError, None, String::new(), describe(&e)),
    };
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let code = Some(i32::from(status.as_u16()));
    let mut body = Capture::default();
    let read_error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.push(&chunk);
                if body.is_full() {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    match read_error {
        Some(e) if e.is_timeout() => Answer::failure(Outcome::Timeout, code, body.into_text(), timed_out(timeout)),
        Some(e) => Answer::failure(Outcome::ConnectionError, code, body.into_text(), describe(&e)),
        None if status.is_success() => Answer::success(i32::from(status.as_u16()), body.into_text()),
        None => {
            let wait = slow_down(status.as_u16(), retry_after.as_ref(), chrono::Utc::now());
            let reason = match wait {
                Some(wait) => format!(
                    "HTTP {status}: the handler answered with a non-2xx status, asking to wait {} s (Retry-After)",
                    wait.as_secs()
                ),
                None => format!("HTTP {status}: the handler answered with a non-2xx status"),
            };
            Answer { retry_after: wait, ..Answer::failure(Outcome::HttpError, code, body.into_text(), reason) }
        }
    }
}

/// The wait an answer asks for (DESIGN §8.2): its `Retry-After` — seconds, or
/// an HTTP date — on a 429, 502, 503 or 504; `None` on any other status, or
/// a header that does not read or lies in the past.
pub fn slow_down(
    status: u16,
    retry_after: Option<&header::HeaderValue>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    if !matches!(status, 429 | 502 | 503 | 504) {
        return None;
    }
    let value = retry_after?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return (seconds > 0).then(|| Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.replace("GMT", "+0000").as_str()).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok().filter(|d| !d.is_zero())
}

fn timed_out(timeout: Duration) -> String {
    format!("no complete answer within the handler's timeout of {} ms", timeout.as_millis())
}

/// The error and its causes, e.g. "error sending request: connection refused".
fn describe(error: &reqwest::Error) -> String {
    crate::diagnostics::cause_chain(error)
}

#[cfg(test)]
mod slow_down_tests {
    use std::time::Duration;

    use reqwest::header::HeaderValue;

    use super::slow_down;

    #[test]
    fn retry_after_is_read_in_seconds_or_as_an_http_date_on_the_statuses_that_mean_slow_down() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let wait = |status, value: &str| slow_down(status, Some(&HeaderValue::from_str(value).unwrap()), now);
        assert_eq!(wait(503, "120"), Some(Duration::from_secs(120)));
        assert_eq!(wait(429, " 5 "), Some(Duration::from_secs(5)));
        assert_eq!(wait(502, "Mon, 07 Dec 2026 10:00:30 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(wait(504, "Mon, 07 Dec 2026 09:59:00 GMT"), None, "in the past");
        assert_eq!(wait(503, "0"), None);
        assert_eq!(wait(503, "soon"), None, "does not read");
        assert_eq!(wait(500, "120"), None, "500 does not mean slow down");
        assert_eq!(wait(200, "120"), None);
        assert_eq!(slow_down(503, None, now), None);
    }
}
