//! A real HTTP handler on 127.0.0.1: records every request it gets and answers
//! as told (status codes in turn, a delay).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tokio::{sync::Notify, time::Instant};

/// One request as the sink saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// When the request arrived and when its answer left.
    pub started: Instant,
    pub ended: Instant,
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

/// How the sink answers on one path.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    pub delay: Duration,
    /// Statuses given in turn to matching requests; 200 once they run out.
    pub statuses: VecDeque<u16>,
    /// Only requests whose body contains this take a status from the queue.
    pub only_if_body_contains: Option<String>,
    /// The answer's body (default `{"answered": <status>}`).
    pub body: Option<Vec<u8>>,
    /// Headers of the answers that take a status from the queue (a
    /// `Retry-After` with a 503).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Default)]
struct State {
    /// Requests that arrived, answered or not.
    arrivals: std::sync::atomic::AtomicUsize,
    received: Mutex<Vec<Received>>,
    behaviors: Mutex<HashMap<String, Behavior>>,
    arrived: Notify,
}

pub struct Sink {
    pub address: String,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

impl Sink {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(answer)))
            .workers(2)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
        let address = format!("http://127.0.0.1:{}", server.addrs()[0].port());
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { address, state, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn behave(&self, path: &str, behavior: Behavior) {
        self.state.behaviors.lock().unwrap().insert(path.to_owned(), behavior);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `done` holds for what was received, failing after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}; received {} requests: {:#?}", received.len(), summary(&received));
            }
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits for at least `n` requests on `path`.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, &format!("{n} requests on {path}"), |r| {
            r.iter().filter(|x| x.path == path).count() >= n
        })
        .await
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
    }

    /// Waits until `n` requests have arrived (answered or not).
    pub async fn wait_arrivals(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.state.arrivals.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} requests to arrive");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Sends the stop at once; the server winds down on its own threads.
        drop(self.handle.stop(false));
    }
}

fn summary(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| format!("{} {} {}", r.path, r.status, r.body.chars().take(120).collect::<String>()))
        .collect()
}

async fn answer(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let started = Instant::now();
    state.arrivals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = req.path().to_owned();
    let body = String::from_utf8_lossy(&body).into_owned();
    let (delay, status, answer, extra) = {
        let mut behaviors = state.behaviors.lock().unwrap();
        match behaviors.get_mut(&path) {
            Some(b) => {
                let matches = b.only_if_body_contains.as_ref().is_none_or(|needle| body.contains(needle.as_str()));
                let queued = if matches { b.statuses.pop_front() } else { None };
                let extra = if queued.is_some() { b.headers.clone() } else { Vec::new() };
                (b.delay, queued.unwrap_or(200), b.body.clone(), extra)
            }
            None => (Duration::ZERO, 200, None, Vec::new()),
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let headers =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    state.received.lock().unwrap().push(Received { path, headers, body, started, ended: Instant::now(), status });
    state.arrived.notify_waiters();
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    for (name, value) in extra {
        response.insert_header((name, value));
    }
    response
        .content_type("application/json")
        .body(answer.unwrap_or_else(|| format!(r#"{{"answered":{status}}}"#).into_bytes()))
}
