//! The real server on 127.0.0.1:0 over a fresh database, driven over HTTP.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use diesel::{Connection, PgConnection, RunQueryDsl};
use provisiond::{app::Application, config::Settings};
use reqwest::{Client, Response, StatusCode, redirect::Policy};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";
pub const API_TOKEN: &str = "test-api-token-0123456789";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test function on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = $crate::helpers::TestDb::new($crate::helpers::Backend::Sqlite);
                super::$name(db.expect("SQLite is always available")).await
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::helpers::TestDb::new($crate::helpers::Backend::Postgres) {
                    super::$name(db).await
                }
            }
        }
    )*};
}

/// A fresh database for one test: a SQLite file in a temp dir, or a new
/// PostgreSQL database dropped at the end.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// Runs SQL on the database over a connection of the test's own.
    pub fn raw_sql(&self, sql: &str) -> usize {
        use diesel::{SqliteConnection, connection::SimpleConnection};
        match self.url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut conn = SqliteConnection::establish(path).unwrap();
                conn.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
                diesel::sql_query(sql).execute(&mut conn).unwrap()
            }
            None => diesel::sql_query(sql).execute(&mut PgConnection::establish(&self.url).unwrap()).unwrap(),
        }
    }

    /// `None` (with a note) when PostgreSQL is not reachable on a developer
    /// machine; a panic when CI requires it (`TEST_DATABASE_URL` or `PG_REQUIRED=1` set).
    pub fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Some(Self { url, _dir: Some(dir), pg_admin: None })
            }
            Backend::Postgres => Self::postgres(),
        }
    }

    fn postgres() -> Option<Self> {
        let configured = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
        let required = configured.is_some() || std::env::var("PG_REQUIRED").is_ok_and(|v| v == "1");
        let admin_url = configured.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = match PgConnection::establish(&admin_url) {
            Ok(conn) => conn,
            Err(e) if required => panic!("PostgreSQL required but unreachable at {admin_url}: {e}"),
            Err(e) => {
                eprintln!("skipping a PostgreSQL test: {admin_url} unreachable ({e}); set TEST_DATABASE_URL");
                return None;
            }
        };
        let name = format!("provisiond_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some(Self { url: url.to_string(), _dir: None, pg_admin: Some((admin_url, name)) })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.pg_admin
            && let Ok(mut conn) = PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
        }
    }
}

/// A running server and a browser-like client (cookies kept, redirects not followed).
pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub stopper: provisiond::app::Stopper,
    pub running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub scripts_dir: PathBuf,
    _scripts: tempfile::TempDir,
    _db: TestDb,
}

pub fn settings(db: &TestDb, scripts_dir: &std::path::Path) -> Settings {
    let mut s = Settings::with_database(db.url.clone());
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.admin_user = ADMIN_USER.into();
    s.admin_password = Some(ADMIN_PASSWORD.into());
    s.api_token = Some(API_TOKEN.into());
    s.scripts_dir = scripts_dir.to_path_buf();
    s.http_workers = 2;
    s.db_pool_size = 4;
    s.retry_schedule = provisiond::domain::RetrySchedule::parse("100ms,100ms").unwrap();
    s.poll_interval = std::time::Duration::from_millis(100);
    s.lease = std::time::Duration::from_secs(3);
    s.shutdown_grace = std::time::Duration::from_secs(5);
    s
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> Self {
        let scripts = tempfile::tempdir().unwrap();
        Self::spawn_with(db, scripts, |_| {}).await
    }

    pub async fn spawn_with(db: TestDb, scripts: tempfile::TempDir, tweak: impl FnOnce(&mut Settings)) -> Self {
        show_server_log();
        let mut s = settings(&db, scripts.path());
        tweak(&mut s);
        let app = Application::build(s).await.expect("the server starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let stopper = app.stopper();
        let running = tokio::spawn(app.run_until_stopped());
        let client = Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
        Self {
            address,
            client,
            stopper,
            running: Some(running),
            scripts_dir: scripts.path().to_path_buf(),
            _scripts: scripts,
            _db: db,
        }
    }

    /// A server whose failed attempts are retried on `schedule` (e.g. `"30s"`, or `""` for never).
    pub async fn with_retries(db: TestDb, schedule: &str) -> Self {
        let schedule = provisiond::domain::RetrySchedule::parse(schedule).unwrap();
        Self::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.retry_schedule = schedule).await
    }

    /// A server with a signed-in administrator; returns the session's CSRF token too.
    pub async fn signed_in(db: TestDb) -> (Self, String) {
        let app = Self::spawn(db).await;
        let csrf = app.sign_in().await;
        (app, csrf)
    }

    /// Stops the server as SIGTERM would and waits until it has.
    pub async fn stop(&mut self) {
        self.stopper.stop().await;
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }

    /// Stops the server and gives back its database, for another start.
    pub async fn stopped(mut self) -> TestDb {
        self.stop().await;
        self._db
    }

    /// Posts an event through the API; returns the status and the JSON answer.
    pub async fn post_event(&self, body: &serde_json::Value) -> (StatusCode, serde_json::Value) {
        let res = self.api(reqwest::Method::POST, "/api/v1/events").json(body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Creates a handler through the API; returns its JSON.
    pub async fn create_handler(&self, body: serde_json::Value) -> serde_json::Value {
        let res = self.api(reqwest::Method::POST, "/api/v1/handlers").json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "creating {body}");
        res.json().await.unwrap()
    }

    /// GETs an API path as JSON.
    pub async fn api_json(&self, path: &str) -> serde_json::Value {
        let res = self.api(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.json().await.unwrap()
    }

    /// Polls an API path until `done` holds for its JSON (10 s at most).
    pub async fn api_until(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let value = self.api_json(path).await;
            if done(&value) {
                return value;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {value:#}");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Waits until no delivery is pending or in flight (all processes): from
    /// then on nothing more is attempted, which a count taken after proves.
    pub async fn settled(&self) {
        settled(&self.address).await;
    }

    /// Runs SQL on the server's database over a connection of the test's
    /// own (for set-ups no API makes: a backlog of a million rows).
    pub fn raw_sql(&self, sql: &str) -> usize {
        self._db.raw_sql(sql)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The page's HTML, without the `<wbr>` line-break hints (a target's
    /// text reads as one, as a user reads it).
    pub async fn get_page(&self, path: &str) -> String {
        let res = self.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.text().await.unwrap().replace("<wbr>", "")
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.client.post(self.url(path)).form(fields).send().await.unwrap()
    }

    /// Signs in through the login form; returns the session's CSRF token.
    pub async fn sign_in(&self) -> String {
        let res = self.try_sign_in(ADMIN_USER, ADMIN_PASSWORD).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "sign-in succeeds");
        let page = self.get_page("/provisioning").await;
        csrf_of(&page)
    }

    pub async fn try_sign_in(&self, user: &str, password: &str) -> Response {
        let login = self.get_page("/login").await;
        let token = hidden_field(&login, "csrf_token");
        self.post_form("/login", &[("username", user), ("password", password), ("csrf_token", &token), ("next", "")])
            .await
    }

    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(API_TOKEN)
    }

    /// Writes an executable (or not) script into the scripts directory.
    pub fn write_script(&self, name: &str, body: &str, executable: bool) -> PathBuf {
        let path = self.scripts_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
            // Writable by its owner only, whatever the umask: scripts in a
            // directory others may write are refused.
            if parent != self.scripts_dir {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        std::fs::write(&path, body).unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

/// The session's CSRF token as a signed-in page carries it.
pub fn csrf_of(page: &str) -> String {
    let re = regex::Regex::new(r#"<meta name="csrf-token" content="([^"]+)">"#).unwrap();
    re.captures(page).expect("the page carries a CSRF token")[1].to_owned()
}

/// The value of a hidden or text input by name.
pub fn hidden_field(page: &str, name: &str) -> String {
    let re = regex::Regex::new(&format!(r#"name="{}" value="([^"]*)""#, regex::escape(name))).unwrap();
    re.captures(page).unwrap_or_else(|| panic!("no field {name}"))[1].to_owned()
}

/// The message shown beside a form field, if any.
pub fn field_error(page: &str, field: &str) -> Option<String> {
    let re = regex::Regex::new(&format!(r#"id="{}-error">([^<]*)<"#, regex::escape(field))).unwrap();
    re.captures(page).map(|c| c[1].to_owned())
}

/// The ids of the handler rows of a list page, in order.
pub fn listed_ids(page: &str) -> Vec<i64> {
    let re = regex::Regex::new(r#"<tr class="status-\w+" id="handler-\d+">\s*<td class="num">(\d+)</td>"#).unwrap();
    re.captures_iter(page).map(|c| c[1].parse().unwrap()).collect()
}

/// The flash message shown on a page.
pub fn flash_of(page: &str) -> Option<String> {
    let re = regex::Regex::new(r#"<p class="flash" role="status">([^<]*)</p>"#).unwrap();
    re.captures(page).map(|c| c[1].to_owned())
}

/// Waits (10 s at most) until the server at `address` says, in `/metrics`,
/// that no delivery is pending or in flight.
pub async fn settled(address: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let res = Client::new().get(format!("{address}/metrics")).bearer_auth(API_TOKEN).send().await.unwrap();
        let text = res.text().await.unwrap();
        if text.lines().any(|l| l == "provisiond_deliveries_unfinished 0") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "deliveries still unfinished");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Another browser on a running server, signed in as one user: its own
/// cookies, its session's CSRF token added to every form it posts.
pub struct Browser {
    pub client: Client,
    pub address: String,
    pub csrf: String,
}

impl TestApp {
    /// A new browser signed in as `user` (the sign-in must succeed).
    pub async fn browser(&self, user: &str, password: &str) -> Browser {
        let client = Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
        let mut browser = Browser { client, address: self.address.clone(), csrf: String::new() };
        let res = browser.sign_in(user, password).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{user} signs in");
        browser.csrf = csrf_of(&browser.get_page("/provisioning").await);
        browser
    }

    /// Creates a user through the users page, as the signed-in admin.
    pub async fn create_user(&self, csrf: &str, user: &str, password: &str, role: &str) {
        let res = self
            .post_form(
                "/settings/users",
                &[("csrf_token", csrf), ("username", user), ("password", password), ("role", role)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "creating {user}: {}", res.text().await.unwrap());
    }
}

impl Browser {
    pub async fn sign_in(&self, user: &str, password: &str) -> Response {
        let login = self.get("/login").await.text().await.unwrap();
        let token = hidden_field(&login, "csrf_token");
        self.client
            .post(format!("{}/login", self.address))
            .form(&[("username", user), ("password", password), ("csrf_token", &token), ("next", "")])
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(format!("{}{path}", self.address)).send().await.unwrap()
    }

    pub async fn get_page(&self, path: &str) -> String {
        let res = self.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.text().await.unwrap()
    }

    /// Posts a form with this session's CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut all = vec![("csrf_token", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.client.post(format!("{}{path}", self.address)).form(&all).send().await.unwrap()
    }
}

/// The server's warnings and errors go to the test's output, which the
/// harness shows beside a failure (`RUST_LOG` to see more).
fn show_server_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("provisiond=warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}
