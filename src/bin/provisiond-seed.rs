//! provisiond-seed: fills a database with a big history and times the pages.
//!
//! `provisiond-seed --database sqlite://big.db --handlers 10000 --logs 1000000`
//! writes handlers, events, deliveries and execution logs (four attempts per
//! delivery, spread over the last 29 days) with set-based SQL, then starts the
//! server in-process, signs in and times the handler list, the all-handlers
//! log, filtered logs, a handler's log, an attempt's details and an object
//! timeline (median and worst of repeated requests), and prints the query
//! plans of the queries behind them.

use std::time::{Duration, Instant};

use clap::Parser;
use provisiond::{
    app::Application,
    config::Settings,
    db::{
        Db,
        seed::{explain, seed, seed_backlog},
    },
};

#[derive(Debug, Parser)]
#[command(about = "Seed a big history into a provisiond database and time the pages")]
struct Args {
    /// The database to fill (it is migrated first); it should be empty.
    #[arg(long, default_value = "sqlite://provisiond-seed.db")]
    database: String,
    #[arg(long, default_value_t = 10_000)]
    handlers: i64,
    /// Execution-log rows (four attempts per delivery, one delivery per event).
    #[arg(long, default_value_t = 1_000_000)]
    logs: i64,
    /// Unfinished deliveries on handler 1 (events of their own): half waiting
    /// for a first attempt, half retrying after a failed one, due in a day.
    #[arg(long, default_value_t = 0)]
    backlog: i64,
    /// Only time the pages of an already seeded database.
    #[arg(long)]
    measure_only: bool,
    /// Requests per page when timing.
    #[arg(long, default_value_t = 21)]
    repeat: usize,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let db = tokio::task::spawn_blocking({
            let url = args.database.clone();
            move || Db::connect(&url, 4)
        })
        .await
        .unwrap()
        .expect("the database answers");
        if !args.measure_only {
            let started = Instant::now();
            let (handlers, logs, backlog) = (args.handlers, args.logs, args.backlog);
            db.write(move |conn| seed(conn, handlers, logs)).await.expect("seeding works");
            db.write(move |conn| seed_backlog(conn, backlog)).await.expect("seeding the backlog works");
            println!(
                "seeded {} handlers and {} execution logs in {:.1} s",
                args.handlers,
                args.logs,
                started.elapsed().as_secs_f64()
            );
        }
        db.read(explain).await.expect("plans");
        // The server measured opens the database itself (on SQLite, one process holds it).
        db.release_lock();
        drop(db);
        measure(&args).await;
    });
}

/// Starts the server on the seeded database and times each page.
async fn measure(args: &Args) {
    let scripts = std::env::temp_dir();
    let mut settings = Settings::with_database(args.database.clone());
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.admin_password = Some("seed-password".into());
    settings.api_token = Some("seed-token-for-timing-the-pages".into());
    settings.scripts_dir = scripts;
    let app = Application::build(settings).await.expect("the server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    tokio::spawn(app.run_until_stopped());
    let client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let token =
        login.split("name=\"csrf_token\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    client
        .post(format!("{base}/login"))
        .form(&[
            ("username", "admin"),
            ("password", "seed-password"),
            ("csrf_token", token.as_str()),
            ("next", "/provisioning"),
        ])
        .send()
        .await
        .unwrap();
    let newest_log = client.get(format!("{base}/provisioning/logs")).send().await.unwrap().text().await.unwrap();
    let log_id =
        newest_log.split("/provisioning/logs/").nth(1).and_then(|r| r.split('"').next()).unwrap_or("1").to_owned();
    let deep = args.logs / 2;
    let pages = [
        ("handler list (page 1, with health)", "/provisioning".to_owned()),
        ("handler list (page 100)", "/provisioning?page=100".to_owned()),
        ("handler list: find by name", "/provisioning?q=Handler%204242".to_owned()),
        ("handler list: find, sorted by name", "/provisioning?q=hook%2F77&sort=name".to_owned()),
        ("deliveries: failing", "/provisioning/deliveries?state=failing".to_owned()),
        ("events list", "/provisioning/events".to_owned()),
        ("all-handlers log", "/provisioning/logs".to_owned()),
        ("all-handlers log, deep page", format!("/provisioning/logs?before={deep}")),
        ("log filtered: status fail", "/provisioning/logs?outcome=fail".to_owned()),
        ("log filtered: event", "/provisioning/logs?event=clients.update".to_owned()),
        ("log filtered: object id", "/provisioning/logs?object_id=123".to_owned()),
        ("log text search: common text", "/provisioning/logs?q=Unavailable".to_owned()),
        ("log text search: text and status fail", "/provisioning/logs?q=refused&outcome=fail".to_owned()),
        ("log text search: found nowhere", "/provisioning/logs?q=found-nowhere".to_owned()),
        ("log text search: found nowhere, deep", format!("/provisioning/logs?q=found-nowhere&before={deep}")),
        ("a handler's log", "/provisioning/42/logs".to_owned()),
        ("attempt details", format!("/provisioning/logs/{log_id}")),
        ("object timeline", "/provisioning/timeline?entity=clients&object_id=123".to_owned()),
    ];
    println!("\npage timings over {} requests each (loopback HTTP, signed in):", args.repeat);
    for (what, path) in pages {
        let mut times = Vec::with_capacity(args.repeat);
        let (mut status, mut size) = (0, 0);
        for _ in 0..args.repeat {
            let started = Instant::now();
            let res = client.get(format!("{base}{path}")).send().await.unwrap();
            status = res.status().as_u16();
            size = res.bytes().await.unwrap().len();
            times.push(started.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {what:<38} median {:>7.2} ms   worst {:>7.2} ms   (HTTP {status}, {:>4} KiB) {path}",
            ms(times[times.len() / 2]),
            ms(*times.last().unwrap()),
            size / 1024
        );
    }
    stopper.stop().await;
}
