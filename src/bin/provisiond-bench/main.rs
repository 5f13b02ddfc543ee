//! provisiond-bench: end-to-end throughput and latency of a release server.
//!
//! Starts a server process (this binary again, running the real server code)
//! on a fresh database, a fast local HTTP sink, registers one handler, posts N
//! events from C keep-alive connections, and reports ingest rate, delivery
//! rate, post-to-arrival latency, the server's peak RSS and CPU per event —
//! with the sink's raw loopback ceiling beside them. Every event must arrive
//! exactly once. With `--ingest-only` no handler is registered: ingestion on
//! its own, every event stored. With `--backlog` the sink holds its answers
//! until every event is acknowledged: how fast the backlog then drains. With
//! `--stuck-chain N`, N events of another type first wait behind a handler
//! that never answers: what a stuck chain costs everyone else. With
//! `--paused N`, a paused handler of another type keeps a backlog of N
//! events through the run: what a pause costs everyone else. With
//! `--limited R`, a handler of another type limited to R attempts a second
//! drains a backlog beside the run: the rate it gets, and what it costs the
//! unlimited one. `--instances 2` (PostgreSQL) runs a second server on the
//! same database, claiming beside the first.

use std::{
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use wire::{Arrivals, Conn};

mod beside;
mod report;
mod wire;

use report::{Drain, Report};

#[derive(Debug, Clone, Parser)]
#[command(about = "Measure provisiond end to end: ingest, delivery, latency, memory, CPU")]
struct Args {
    /// Events to post.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    events: usize,
    /// Concurrent keep-alive connections posting.
    #[arg(short = 'c', long, default_value_t = 32)]
    connections: usize,
    /// Pace the posts at this many events per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Database: a PostgreSQL URL (a fresh database is created beside it) or empty for a fresh SQLite file.
    #[arg(long, default_value = "")]
    database: String,
    /// Skip the raw sink ceiling measurement.
    #[arg(long)]
    no_ceiling: bool,
    /// Register no handler: measure ingestion on its own (every event is
    /// stored, none is delivered; the check counts the events stored).
    #[arg(long)]
    ingest_only: bool,
    /// The handler's endpoint stops answering while the events are posted
    /// (the sink holds its answers) and answers again once all are
    /// acknowledged: how fast the backlog drains when it comes back.
    #[arg(long, conflicts_with = "ingest_only")]
    backlog: bool,
    /// Before the run, post this many events of another type to two handlers
    /// of one chain, the first of which never answers (its attempts wait for
    /// a long timeout; the second handler's wait for their turn), and leave
    /// them waiting through the run: what a stuck chain costs everyone else.
    #[arg(long, default_value_t = 0)]
    stuck_chain: usize,
    /// Before the run, pause a handler of another event type and post this
    /// many events for it; they wait through the run (none is attempted).
    #[arg(long, default_value_t = 0)]
    paused: usize,
    /// Before the run, add a handler of another event type limited to this
    /// many attempts a second, and post it `--limited-events` events: they
    /// drain beside the run, and the report gives the rate they arrived at.
    #[arg(long)]
    limited: Option<f64>,
    /// The events for the `--limited` handler (default: ten seconds' worth).
    #[arg(long)]
    limited_events: Option<usize>,
    /// Servers sharing the database (PostgreSQL): the others claim beside
    /// the first, which the events are posted to.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    #[arg(long, hide = true)]
    serve: bool,
}

const TOKEN: &str = "bench-token-0123456789abcdef";

fn main() {
    let args = Args::parse();
    if args.serve {
        return serve();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench(args));
}

/// The server, exactly as `provisiond` runs it, configured from the environment.
/// It ends with the benchmark, even one that panicked or was killed.
fn serve() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches
    // no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    let settings = provisiond::config::Settings::parse_from(["provisiond"]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let app = provisiond::app::Application::build(settings).await.expect("the server starts");
        app.run_until_stopped().await.unwrap();
    });
}

async fn bench(args: Args) {
    let arrivals = Arc::new(Arrivals::new(args.events, args.backlog));
    let sink = wire::start_sink(arrivals.clone()).await;
    let client = reqwest::Client::new();
    let ceiling = if args.no_ceiling { None } else { Some(raw_ceiling(&sink, args.connections).await) };

    let dir = tempfile_dir();
    let (database, dropper) = fresh_database(&args.database, &dir);
    let (server, address) = start_server(&database, &dir);
    let pid = server.id();
    wait_ready(&client, &address).await;
    let mut others = Vec::new();
    for _ in 1..args.instances {
        assert!(database.starts_with("postgres"), "--instances needs a PostgreSQL --database");
        let (other, other_address) = start_server(&database, &dir);
        wait_ready(&client, &other_address).await;
        others.push(other);
    }
    if !args.ingest_only {
        register_handler(&client, &address, &sink, args.backlog).await;
    }
    if args.stuck_chain > 0 {
        beside::stick_a_chain(&args, &client, &address, &sink).await;
    }
    if args.paused > 0 {
        beside::pause_a_handler(&args, &client, &address, &sink).await;
    }
    let limited = match args.limited {
        Some(rate) => Some(beside::limit_a_handler(&args, rate, &client, &address, &sink).await),
        None => None,
    };

    let metrics_before = metrics(&client, &address).await;
    let cpu_before = cpu_seconds(pid);
    let bench_cpu_before = cpu_seconds(std::process::id());
    let ui_probe = probe_ui(&address).await;
    let rss = probe_rss(pid);
    let start = Instant::now();
    let load = post_events(&args, &address, start, BENCH_EVENT, args.events).await;
    let ingest_elapsed = start.elapsed();
    let drain_start =
        if args.backlog { Some(DrainStart::release(&arrivals, pid, &client, &address).await) } else { None };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !args.ingest_only && arrivals.total.load(Ordering::Relaxed) < args.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let last_arrival = arrivals.at.lock().unwrap().iter().filter_map(|t| *t).max();
    let limited = match limited {
        Some(n) => Some(beside::limited_rate(&arrivals, n).await),
        None => None,
    };
    let ui_times = ui_probe.stop().await;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu_before;
    tokio::time::sleep(Duration::from_millis(300)).await; // any duplicate would show now
    let peak_rss_kb = rss.stop().await.max(hwm_kb(pid));
    let cpu = cpu_seconds(pid) - cpu_before;
    let metrics = metrics(&client, &address).await;
    let drain = drain_start.map(|d| Drain {
        secs: last_arrival.map(|t| t.duration_since(d.at).as_secs_f64()).unwrap_or(f64::NAN),
        held: d.held,
        cpu: cpu_seconds(pid) - d.cpu,
        metrics_before: d.metrics,
    });

    let report = Report {
        args: &args,
        ceiling,
        accepted: load.accepted,
        ingest_elapsed,
        delivery_secs: last_arrival.map(|t| t.duration_since(start).as_secs_f64()).unwrap_or(f64::NAN),
        latencies: latencies(&load.posted_at, &arrivals),
        acks: load.acks,
        arrived: arrivals.at.lock().unwrap().iter().filter(|t| t.is_some()).count(),
        duplicates: arrivals.duplicates.load(Ordering::Relaxed),
        peak_rss_kb,
        cpu,
        bench_cpu,
        metrics,
        metrics_before,
        ui_times,
        drain,
        limited,
    };
    let exact = report.print();
    for mut server in others.into_iter().chain([server]) {
        let _ = server.kill();
        let _ = server.wait();
    }
    dropper();
    if !exact {
        std::process::exit(1);
    }
}

/// Where the drain of a backlog began.
struct DrainStart {
    at: Instant,
    /// Events already at the handler, waiting for its answer.
    held: usize,
    cpu: f64,
    metrics: String,
}

impl DrainStart {
    /// Lets the sink answer again; what the drain starts from.
    async fn release(arrivals: &Arrivals, pid: u32, client: &reqwest::Client, address: &str) -> Self {
        let start = Self {
            at: Instant::now(),
            held: arrivals.total.load(Ordering::Relaxed),
            cpu: cpu_seconds(pid),
            metrics: metrics(client, address).await,
        };
        arrivals.release();
        start
    }
}

/// The event type the run posts.
const BENCH_EVENT: &str = "clients.update";
/// The one handler, posting to the sink's `/hook`.
async fn register_handler(client: &reqwest::Client, address: &str, sink: &str, backlog: bool) {
    let mut handler = serde_json::json!({"name": "bench sink", "events_id": BENCH_EVENT, "type": "http", "target": format!("{sink}/hook"), "priority": 1});
    if backlog {
        // The held attempts wait for their answer instead of timing out.
        handler["timeout_ms"] = 300_000.into();
    }
    let res = client.post(format!("{address}/api/v1/handlers")).bearer_auth(TOKEN).json(&handler).send().await.unwrap();
    assert_eq!(res.status(), 201, "handler created");
}

async fn metrics(client: &reqwest::Client, address: &str) -> String {
    client.get(format!("{address}/metrics")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap_or_default()
}

/// The server process, as `provisiond` but started from this binary.
fn start_server(database: &str, dir: &std::path::Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .env("PROVISIOND_DATABASE_URL", database)
        .env("PROVISIOND_BIND", format!("127.0.0.1:{port}"))
        .env("PROVISIOND_API_TOKEN", TOKEN)
        .env("PROVISIOND_ADMIN_PASSWORD", "bench")
        .env("PROVISIOND_SCRIPTS_DIR", dir)
        .env("PROVISIOND_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the server starts");
    (server, format!("http://127.0.0.1:{port}"))
}

/// When each event was posted, and how many were acknowledged.
struct Load {
    posted_at: Vec<Option<Instant>>,
    /// Post-to-202 times, sorted.
    acks: Vec<Duration>,
    accepted: usize,
}

/// Posts `n` events of type `events_id` from `connections` keep-alive
/// connections, paced when asked.
async fn post_events(args: &Args, address: &str, start: Instant, events_id: &'static str, n: usize) -> Load {
    let posted_at = Arc::new(Mutex::new(vec![None; n]));
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (address, next, accepted, posted_at, acks) =
                (address.to_owned(), next.clone(), accepted.clone(), posted_at.clone(), acks.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(&address, "/api/v1/events", TOKEN).await.expect("a connection to the server");
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    if let Some(every) = interval {
                        tokio::time::sleep_until((start + every.mul_f64(i as f64)).into()).await;
                    }
                    let body = format!(
                        r#"{{"event":{{"dt":"2026-11-24T10:00:00+00:00","events_id":"{events_id}","object_id":{i}}},"data":{{"n":{i},"name":"client {i}"}}}}"#
                    );
                    let posted = Instant::now();
                    posted_at.lock().unwrap()[i] = Some(posted);
                    if conn.post(&body).await.is_ok_and(|status| status == 202) {
                        acks.lock().unwrap().push(posted.elapsed());
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let posted_at = posted_at.lock().unwrap().clone();
    let mut acks = acks.lock().unwrap().clone();
    acks.sort();
    Load { posted_at, acks, accepted: accepted.load(Ordering::Relaxed) }
}

/// Post-to-arrival times, sorted.
fn latencies(posted_at: &[Option<Instant>], arrivals: &Arrivals) -> Vec<Duration> {
    let at = arrivals.at.lock().unwrap();
    let mut all: Vec<Duration> =
        posted_at.iter().zip(at.iter()).filter_map(|(p, a)| Some(a.as_ref()?.duration_since(*p.as_ref()?))).collect();
    all.sort();
    all
}

/// A background task that repeats `step` until stopped, then hands back its state.
struct Probe<T> {
    done: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<T>,
}

impl<T: Send + 'static> Probe<T> {
    fn spawn<F, Fut>(mut state: T, mut step: F) -> Self
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send,
    {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let handle = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                state = step(state).await;
            }
            state
        });
        Self { done, handle }
    }

    async fn stop(self) -> T {
        self.done.store(true, Ordering::Relaxed);
        self.handle.await.unwrap()
    }
}

/// The handler list's response times, every 100 ms, as a signed-in administrator sees them.
async fn probe_ui(address: &str) -> Probe<Vec<Duration>> {
    let ui = reqwest::Client::builder().cookie_store(true).build().unwrap();
    sign_in(&ui, address).await;
    let url = format!("{address}/provisioning");
    Probe::spawn(Vec::new(), move |mut times| {
        let (ui, url) = (ui.clone(), url.clone());
        async move {
            let t = Instant::now();
            if ui.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                times.push(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            times
        }
    })
}

/// The server's resident memory, sampled every 20 ms: the peak, in KiB.
fn probe_rss(pid: u32) -> Probe<u64> {
    Probe::spawn(0, move |peak| async move {
        let peak = peak.max(rss_kb(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak
    })
}

/// Requests per second the sink takes straight from the load generator.
async fn raw_ceiling(sink: &str, connections: usize) -> f64 {
    let total = 50_000;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (next, sink) = (next.clone(), sink.to_owned());
            tokio::spawn(async move {
                let mut conn = Conn::open(&sink, "/raw", TOKEN).await.expect("a connection to the sink");
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let _ = conn.post("{}").await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn sign_in(client: &reqwest::Client, address: &str) {
    let login = client.get(format!("{address}/login")).send().await.unwrap().text().await.unwrap();
    let token = login
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned();
    client
        .post(format!("{address}/login"))
        .form(&[
            ("username", "admin"),
            ("password", "bench"),
            ("csrf_token", token.as_str()),
            ("next", "/provisioning"),
        ])
        .send()
        .await
        .unwrap();
}

async fn wait_ready(client: &reqwest::Client, address: &str) {
    for _ in 0..400 {
        if client.get(format!("{address}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server did not become ready");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("provisiond-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh database: a new SQLite file, or a new database on the PostgreSQL server named.
fn fresh_database(url: &str, dir: &std::path::Path) -> (String, Box<dyn FnOnce()>) {
    if url.is_empty() {
        let owned = dir.to_path_buf();
        return (
            format!("sqlite://{}", dir.join("bench.db").display()),
            Box::new(move || drop(std::fs::remove_dir_all(owned))),
        );
    }
    let name = format!("provisiond_bench_{}", std::process::id());
    provisiond::db::scratch::create_database(url, &name).expect("PostgreSQL answers");
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&name);
    let (admin, owned) = (url.to_owned(), dir.to_path_buf());
    (
        parsed.to_string(),
        Box::new(move || {
            let _ = provisiond::db::scratch::drop_database(&admin, &name);
            let _ = std::fs::remove_dir_all(owned);
        }),
    )
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmRSS:")
}

fn hwm_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmHWM:")
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(") ").map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}
