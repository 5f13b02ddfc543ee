//! The HTTP call of a handler (DESIGN §4.5): POST the envelope, signed with
//! the Standard Webhooks headers; success is any 2xx within the timeout.

use std::time::{Duration, Instant};

use reqwest::{Client, header};

use super::outcome::{AttemptResult, Capture, Outcome};
use crate::{db::claims::Claimed, domain::signing::sign};

pub const USER_AGENT: &str = concat!("provisiond/", env!("CARGO_PKG_VERSION"));

/// The client every HTTP handler shares: connections are kept alive and
/// reused per host; redirects are not followed.
pub fn client() -> Result<Client, reqwest::Error> {
    let builder = || {
        Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
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

pub async fn call(client: &Client, delivery: &Claimed) -> AttemptResult {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign(&delivery.secret, &delivery.webhook_id, timestamp, delivery.payload.as_bytes());
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), USER_AGENT.to_owned()),
        ("webhook-id".to_owned(), delivery.webhook_id.clone()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ("webhook-signature".to_owned(), signature.clone()),
    ];
    let timeout = Duration::from_millis(u64::try_from(delivery.timeout_ms).unwrap_or(10_000));
    let started = Instant::now();
    let request = client
        .post(&delivery.target)
        .timeout(timeout)
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone());
    let result = match request.send().await {
        Ok(mut response) => {
            let status = response.status();
            let mut body = Capture::default();
            let mut read_error = None;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        body.push(&chunk);
                        if body.is_full() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            match read_error {
                Some(e) if e.is_timeout() => failure(Outcome::Timeout, Some(status.as_u16()), body, timed_out(timeout)),
                Some(e) => failure(Outcome::ConnectionError, Some(status.as_u16()), body, describe(&e)),
                None if status.is_success() => AttemptResult {
                    outcome: Outcome::Success,
                    status_code: Some(i32::from(status.as_u16())),
                    response: body.into_text(),
                    error: None,
                    request_headers: Vec::new(),
                    duration: Duration::ZERO,
                },
                None => {
                    let reason = format!("HTTP {status}: the handler answered with a non-2xx status");
                    failure(Outcome::HttpError, Some(status.as_u16()), body, reason)
                }
            }
        }
        Err(e) if e.is_timeout() => failure(Outcome::Timeout, None, Capture::default(), timed_out(timeout)),
        Err(e) => failure(Outcome::ConnectionError, None, Capture::default(), describe(&e)),
    };
    AttemptResult { request_headers: headers, duration: started.elapsed(), ..result }
}

fn failure(outcome: Outcome, status: Option<u16>, body: Capture, error: String) -> AttemptResult {
    AttemptResult {
        outcome,
        status_code: status.map(i32::from),
        response: body.into_text(),
        error: Some(error),
        request_headers: Vec::new(),
        duration: Duration::ZERO,
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("no complete answer within the handler's timeout of {} ms", timeout.as_millis())
}

/// The error and its causes, e.g. "error sending request: connection refused".
fn describe(error: &reqwest::Error) -> String {
    crate::diagnostics::cause_chain(error)
}
