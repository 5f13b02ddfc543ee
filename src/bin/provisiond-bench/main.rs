//! provisiond-bench: end-to-end throughput and latency of a release server.
//!
//! Starts a server process (this binary again, running the real server code)
//! on a fresh database, a fast local HTTP sink, registers one handler, posts N
//! events from C keep-alive connections, and reports ingest rate, delivery
//! rate, post-to-arrival latency, the server's peak RSS and CPU per event —
//! with the sink's raw loopback ceiling beside them. Every event must arrive
//! exactly once.

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

mod wire;

#[derive(Debug, Parser)]
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
    #[arg(long, hide = true)]
    serve: bool,
}

const TOKEN: &str = "bench-token";

fn main() {
    let args = Args::parse();
    if args.serve {
        return serve();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench(args));
}

/// The server, exactly as `provisiond` runs it, configured from the environment.
fn serve() {
    provisiond::app::limit_malloc_arenas();
    let settings = provisiond::config::Settings::parse_from(["provisiond"]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let app = provisiond::app::Application::build(settings).await.expect("the server starts");
        app.run_until_stopped().await.unwrap();
    });
}

async fn bench(args: Args) {
    let arrivals = Arc::new(Arrivals::new(args.events));
    let sink = wire::start_sink(arrivals.clone()).await;
    let client = reqwest::Client::new();

    let ceiling = if args.no_ceiling { None } else { Some(raw_ceiling(&sink, args.connections).await) };

    let dir = tempfile_dir();
    let (database, dropper) = fresh_database(&args.database, &dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("http://127.0.0.1:{port}");
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .env("PROVISIOND_DATABASE_URL", &database)
        .env("PROVISIOND_BIND", format!("127.0.0.1:{port}"))
        .env("PROVISIOND_API_TOKEN", TOKEN)
        .env("PROVISIOND_ADMIN_PASSWORD", "bench")
        .env("PROVISIOND_SCRIPTS_DIR", &dir)
        .env("PROVISIOND_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the server starts");
    let pid = server.id();
    wait_ready(&client, &address).await;
    let res = client
        .post(format!("{address}/api/v1/handlers"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "bench sink", "events_id": "clients.update", "type": "http", "target": format!("{sink}/hook"), "priority": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "handler created");
    let cpu_before = cpu_seconds(pid);

    // Post.
    let posted_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; args.events]));
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut tasks = Vec::new();
    let bench_cpu_before = cpu_seconds(std::process::id());
    for _ in 0..args.connections {
        let (address, next, accepted, posted_at) = (address.clone(), next.clone(), accepted.clone(), posted_at.clone());
        let n = args.events;
        tasks.push(tokio::spawn(async move {
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
                    r#"{{"event":{{"dt":"2026-11-24T10:00:00+00:00","events_id":"clients.update","object_id":{i}}},"data":{{"n":{i},"name":"client {i}"}}}}"#
                );
                posted_at.lock().unwrap()[i] = Some(Instant::now());
                if conn.post(&body).await.is_ok_and(|status| status == 202) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // The UI during the run: the handler list, every 100 ms.
    let ui_times = Arc::new(Mutex::new(Vec::new()));
    let ui_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ui_probe = {
        let (times, done, address) = (ui_times.clone(), ui_done.clone(), address.clone());
        let ui = reqwest::Client::builder().cookie_store(true).build().unwrap();
        sign_in(&ui, &address).await;
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                if ui.get(format!("{address}/provisioning")).send().await.is_ok_and(|r| r.status() == 200) {
                    times.lock().unwrap().push(t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut peak_rss_kb = 0;
    let sampler = {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let handle = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_kb(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        });
        (done, handle)
    };
    for t in tasks {
        t.await.unwrap();
    }
    let ingest_elapsed = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.total.load(Ordering::Relaxed) < args.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all_arrived = arrivals.at.lock().unwrap().iter().filter_map(|t| *t).max();
    ui_done.store(true, Ordering::Relaxed);
    let _ = ui_probe.await;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu_before;
    tokio::time::sleep(Duration::from_millis(300)).await; // any duplicate would show now
    sampler.0.store(true, Ordering::Relaxed);
    peak_rss_kb = peak_rss_kb.max(sampler.1.await.unwrap()).max(hwm_kb(pid));
    let cpu = cpu_seconds(pid) - cpu_before;
    let metrics = client.get(format!("{address}/metrics")).send().await.unwrap().text().await.unwrap_or_default();
    let metric =
        |name: &str| -> f64 { metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0) };

    // Report.
    let n = args.events;
    let ok = accepted.load(Ordering::Relaxed);
    let arrived = arrivals.at.lock().unwrap().iter().filter(|t| t.is_some()).count();
    let dups = arrivals.duplicates.load(Ordering::Relaxed);
    let mut latencies: Vec<Duration> = {
        let posted = posted_at.lock().unwrap();
        let at = arrivals.at.lock().unwrap();
        posted.iter().zip(at.iter()).filter_map(|(p, a)| Some(a.as_ref()?.duration_since(*p.as_ref()?))).collect()
    };
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let delivery_secs = all_arrived.map(|t| t.duration_since(start).as_secs_f64()).unwrap_or(f64::NAN);
    let backend = if args.database.is_empty() { "SQLite" } else { "PostgreSQL" };
    println!(
        "provisiond-bench: {n} events, {} connections, {backend}{}",
        args.connections,
        args.rate.map(|r| format!(", paced at {r} events/s")).unwrap_or_default()
    );
    if let Some(c) = ceiling {
        println!("  raw sink ceiling      {c:>10.0} requests/s (loopback, same connections)");
    }
    println!(
        "  ingest                {:>10.0} events/s  ({ok} accepted with 202 in {:.2} s)",
        ok as f64 / ingest_elapsed.as_secs_f64(),
        ingest_elapsed.as_secs_f64()
    );
    let rate = arrived as f64 / delivery_secs;
    println!(
        "  delivered             {rate:>10.0} events/s  (first post to last arrival: {delivery_secs:.2} s){}",
        ceiling.map(|c| format!(", {:.1} % of the ceiling", 100.0 * rate / c)).unwrap_or_default()
    );
    println!(
        "  latency post→arrival  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("  server peak RSS       {:>10.1} MB", peak_rss_kb as f64 / 1024.0);
    println!(
        "  server CPU            {:>10.1} µs/event  ({cpu:.2} s in all; load generator and sink: {bench_cpu:.2} s)",
        cpu * 1e6 / n as f64
    );
    println!(
        "  batches               {:.1} events per ingest commit, {:.1} deliveries per claim, {:.1} attempts per record commit",
        metric("provisiond_events_ingested_total") / metric("provisiond_ingest_commits_total").max(1.0),
        metric("provisiond_claimed_total") / metric("provisiond_claims_total").max(1.0),
        metric("provisiond_attempts_total{outcome=\"success\"}") / metric("provisiond_record_commits_total").max(1.0),
    );
    let mut ui = ui_times.lock().unwrap().clone();
    ui.sort();
    if let (Some(median), Some(worst)) = (ui.get(ui.len() / 2), ui.last()) {
        println!(
            "  UI during the run     handler list median {:.1} ms, worst {:.1} ms ({} requests)",
            ms(*median),
            ms(*worst),
            ui.len()
        );
    }
    let exact = arrived == n && dups == 0 && ok == n;
    println!(
        "  check                 {}",
        if exact {
            "every event arrived exactly once".to_owned()
        } else {
            format!("FAILED: {arrived} of {n} arrived, {dups} duplicates, {ok} accepted")
        }
    );
    let _ = server.kill();
    let _ = server.wait();
    dropper();
    if !exact {
        std::process::exit(1);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
    use diesel::{Connection, RunQueryDsl};
    let name = format!("provisiond_bench_{}", std::process::id());
    let mut conn = diesel::PgConnection::establish(url).expect("PostgreSQL answers");
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&name);
    let (admin, owned) = (url.to_owned(), dir.to_path_buf());
    (
        parsed.to_string(),
        Box::new(move || {
            if let Ok(mut conn) = diesel::PgConnection::establish(&admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
            }
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
