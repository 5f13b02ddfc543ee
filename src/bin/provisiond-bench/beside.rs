//! What runs beside the measured run: `--stuck-chain`, `--paused` and
//! `--limited`, each a handler of its own event type and its events, posted
//! before the run starts.

use std::time::{Duration, Instant};

use crate::{Args, TOKEN, post_events, report, wire::Arrivals};

/// The event type of `--stuck-chain`.
const STUCK_EVENT: &str = "clients.create";

/// `--stuck-chain`: a handler whose endpoint accepts connections and never
/// answers, a second handler after it in the chain of another event type, and
/// that many events of that type posted; returns once all are acknowledged.
pub async fn stick_a_chain(args: &Args, client: &reqwest::Client, address: &str, sink: &str) {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_at = format!("http://{}/stuck", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hung.accept().await {
            held.push(stream);
        }
    });
    for (name, target, priority) in [("stuck", hung_at, 1), ("after stuck", format!("{sink}/after-stuck"), 2)] {
        let handler = serde_json::json!({"name": name, "events_id": STUCK_EVENT, "type": "http", "target": target,
                                         "priority": priority, "timeout_ms": 300_000});
        let res = client.post(format!("{address}/api/v1/handlers")).bearer_auth(TOKEN).json(&handler).send().await;
        assert_eq!(res.unwrap().status(), 201, "handler created");
    }
    let load =
        post_events(&Args { rate: None, ..args.clone() }, address, Instant::now(), STUCK_EVENT, args.stuck_chain).await;
    assert_eq!(load.accepted, args.stuck_chain, "every event of the stuck chain acknowledged");
}

/// The event type of `--paused`.
const PAUSED_EVENT: &str = "clients.delete";

/// `--paused`: a paused handler and that many events for it, acknowledged
/// and waiting (never attempted) through the run.
pub async fn pause_a_handler(args: &Args, client: &reqwest::Client, address: &str, sink: &str) {
    let handler = serde_json::json!({"name": "paused", "events_id": PAUSED_EVENT, "type": "http",
                                     "target": format!("{sink}/paused"), "status": "paused"});
    let res = client.post(format!("{address}/api/v1/handlers")).bearer_auth(TOKEN).json(&handler).send().await;
    assert_eq!(res.unwrap().status(), 201, "handler created");
    let load =
        post_events(&Args { rate: None, ..args.clone() }, address, Instant::now(), PAUSED_EVENT, args.paused).await;
    assert_eq!(load.accepted, args.paused, "every event for the paused handler acknowledged");
}

/// The event type of `--limited`.
const LIMITED_EVENT: &str = "clients.archive";

/// `--limited`: a handler limited to `rate` attempts a second and its events,
/// acknowledged; how many.
pub async fn limit_a_handler(args: &Args, rate: f64, client: &reqwest::Client, address: &str, sink: &str) -> usize {
    let handler = serde_json::json!({"name": "limited", "events_id": LIMITED_EVENT, "type": "http",
                                     "target": format!("{sink}/limited"), "rate_limit": rate});
    let res = client.post(format!("{address}/api/v1/handlers")).bearer_auth(TOKEN).json(&handler).send().await;
    assert_eq!(res.unwrap().status(), 201, "handler created");
    let n = args.limited_events.unwrap_or((rate * 10.0).ceil().max(20.0) as usize);
    let load = post_events(&Args { rate: None, ..args.clone() }, address, Instant::now(), LIMITED_EVENT, n).await;
    assert_eq!(load.accepted, n, "every event for the limited handler acknowledged");
    n
}

/// Waits for the `--limited` handler's `n` events; the rate they arrived
/// at, from the first arrival to the last.
pub async fn limited_rate(arrivals: &Arrivals, n: usize) -> report::Limited {
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.limited.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = arrivals.limited.lock().unwrap().clone();
    let span = match (at.first(), at.last()) {
        (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
        _ => f64::NAN,
    };
    // n arrivals span n − 1 intervals; the busiest second is the burst seen.
    let busiest = at
        .iter()
        .map(|t| at.iter().filter(|u| **u >= *t && u.duration_since(*t) < Duration::from_secs(1)).count())
        .max();
    report::Limited {
        expected: n,
        arrived: at.len(),
        per_second: (at.len().saturating_sub(1)) as f64 / span,
        busiest_second: busiest.unwrap_or(0),
    }
}
