//! Builds the application from [`Settings`]: database, first-start set-up,
//! the actix server with every route.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use actix_web::{App, HttpServer, dev::Server, middleware, web};

use crate::{
    api,
    config::Settings,
    db::{self, Db, DbError, admins::Admin},
    diagnostics::cause_chain,
    dispatcher::{DispatchSettings, Dispatcher},
    security,
    service::{AppState, Role, tokens::BOOTSTRAP_MIN_CHARS},
    web as pages,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// A server bound to its port, not yet running.
pub struct Application {
    port: u16,
    /// `None` once running.
    server: Option<Server>,
    state: web::Data<AppState>,
}

/// An application dropped unrun never used its SQLite file: another may.
impl Drop for Application {
    fn drop(&mut self) {
        if self.server.is_some() {
            self.state.db.release_lock();
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.alert_url.is_some() && settings.alert_secret.is_none() {
            return Err(StartupError::Setup(
                "PROVISIOND_ALERT_SECRET (whsec_<base64>) is needed to sign the alerts sent to PROVISIOND_ALERT_URL"
                    .into(),
            ));
        }
        let db = {
            let (url, size, max_bytes) =
                (settings.database_url.clone(), settings.db_pool_size, settings.sqlite_max_bytes);
            tokio::task::spawn_blocking(move || Db::connect_with(&url, size, max_bytes))
                .await
                .map_err(|e| StartupError::Setup(e.to_string()))??
        };
        ensure_admin(&db, &settings).await?;
        let api_token_hash = ensure_api_token(&db, &settings).await?;
        if !settings.scripts_dir.is_dir() {
            tracing::warn!(
                dir = %settings.scripts_dir.display(),
                "the scripts directory does not exist; script handlers cannot be created until it does"
            );
        }

        let listener = TcpListener::bind(settings.bind).map_err(|e| StartupError::Bind(settings.bind, e))?;
        let port = listener.local_addr().map_err(|e| StartupError::Bind(settings.bind, e))?.port();
        let workers = if settings.http_workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.http_workers
        };
        let dispatcher = Dispatcher::new(db.clone(), DispatchSettings::from(&settings))
            .map_err(|e| StartupError::Setup(format!("cannot set up the HTTP client: {}", cause_chain(&e))))?;
        let grace = settings.shutdown_grace;
        let state = web::Data::new(AppState::new(db, settings, api_token_hash, dispatcher));
        let app_state = state.clone();
        let tls = state.settings.secure_cookies;
        let server = HttpServer::new(move || {
            let mut headers = middleware::DefaultHeaders::new()
                .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin"))
                // Pages and API answers hold secrets and live data; static
                // files set their own (public) caching.
                .add(("Cache-Control", "no-store"));
            if tls {
                headers = headers.add(("Strict-Transport-Security", "max-age=31536000"));
            }
            App::new()
                .app_data(app_state.clone())
                .wrap(headers)
                .wrap(middleware::Compress::default())
                .wrap(middleware::from_fn(refuse_nul_in_query))
                .wrap(middleware::from_fn(refuse_oversized_bodies))
                .configure(api::configure)
                .configure(pages::configure)
        })
        .workers(workers)
        .disable_signals()
        // Requests under way at a stop get the grace, as attempts do, at the same time.
        .shutdown_timeout(grace.as_secs_f64().ceil() as u64)
        .listen(listener)
        .map_err(|e| StartupError::Setup(e.to_string()))?
        .run();
        Ok(Self { port, server: Some(server), state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops this server and its dispatcher, as a signal would.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.as_ref().expect("not yet running").handle(),
            dispatcher: self.state.dispatcher().clone(),
            stopping: self.state.stopping_flag(),
        }
    }

    /// Serves and dispatches until SIGTERM/SIGINT (or [`Stopper::stop`]):
    /// then the server stops accepting connections and events, new claims
    /// stop, and requests and attempts under way get the grace period (the
    /// same one, at the same time); on SQLite the file's lock is released last.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let stopper = self.stopper();
        let server = self.server.take().expect("run once");
        let dispatcher = self.state.dispatcher().clone();
        let dispatching = tokio::spawn(async move { dispatcher.run().await });
        let housekeeping = tokio::spawn(crate::maintenance::run(self.state.db.clone(), self.state.settings.clone()));
        let jobs = {
            let state = self.state.clone();
            tokio::spawn(async move { state.run_jobs().await })
        };
        let alerts = {
            let state = self.state.clone();
            tokio::spawn(async move { state.run_alerts().await })
        };
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            stopper.stop().await;
        });
        let result = server.await;
        self.state.dispatcher().stop();
        let _ = dispatching.await;
        housekeeping.abort();
        jobs.abort();
        alerts.abort();
        signals.abort();
        self.state.db.release_lock();
        result
    }
}

/// Stops a running [`Application`].
#[derive(Clone)]
pub struct Stopper {
    server: actix_web::dev::ServerHandle,
    dispatcher: Dispatcher,
    stopping: Arc<AtomicBool>,
}

impl Stopper {
    /// No event acknowledged from now on, no new connection, no new claim;
    /// returns once the server has closed (within the grace).
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        tracing::info!("stopping: no event acknowledged from now on, no new claims; letting attempts in flight finish");
        let server = self.server.stop(true);
        self.dispatcher.stop();
        server.await;
    }
}

/// Every page's Content-Security-Policy: scripts, styles and everything else
/// from this server only, no inline script or style, forms posted here only,
/// never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A body whose `Content-Length` is over the limit is answered 413 before any
/// of it is read (the connection is closed: the rest is never read).
async fn refuse_oversized_bodies(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/");
    let limit = match req.app_data::<web::Data<AppState>>() {
        Some(state) if api => state.settings.max_body_bytes,
        _ => pages::session::FORM_LIMIT,
    };
    let length = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_none_or(|n| n <= limit as u64) {
        return next.call(req).await.map(actix_web::dev::ServiceResponse::map_into_left_body);
    }
    let response = if api {
        actix_web::ResponseError::error_response(&crate::error::ApiError::TooLarge(limit))
    } else {
        actix_web::ResponseError::error_response(&crate::error::AppError::TooLarge(limit))
    };
    Ok(req.into_response(response).map_into_right_body())
}

/// A query string with a NUL byte (`%00`) is refused with 400 before any
/// route reads it: no filter of any page or API call can hold one (nor can
/// PostgreSQL compare text with one).
async fn refuse_nul_in_query(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if !req.query_string().contains("%00") {
        return next.call(req).await.map(actix_web::dev::ServiceResponse::map_into_left_body);
    }
    let message = "a query parameter contains a NUL byte (%00); no filter may";
    let response = if req.path().starts_with("/api/") {
        actix_web::ResponseError::error_response(&crate::error::ApiError::BadRequest(message.into()))
    } else {
        actix_web::ResponseError::error_response(&crate::error::AppError::BadRequest(format!("{message}.")))
    };
    Ok(req.into_response(response).map_into_right_body())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Creates the administrator at first start; a configured password replaces the stored one.
async fn ensure_admin(db: &Db, settings: &Settings) -> Result<(), StartupError> {
    let username = settings.admin_user.trim().to_owned();
    if username.is_empty() {
        return Err(StartupError::Setup("PROVISIOND_ADMIN_USER must not be empty".into()));
    }
    let lookup = username.clone();
    let existing = db.read(move |conn| Admin::find_by_username(conn, &lookup)).await?;
    let configured = settings.admin_password.clone().filter(|p| !p.is_empty());
    if let Some(admin) = existing.as_ref().filter(|a| a.role != Role::Admin.as_str()) {
        // The bootstrap administrator is the way back in: it stays an admin.
        let id = admin.id;
        db.write(move |conn| Admin::set_role(conn, id, Role::Admin.as_str())).await?;
        tracing::warn!(user = ?username, "the bootstrap administrator (PROVISIOND_ADMIN_USER) had lost the admin role; restored");
    }
    match (existing, configured) {
        (Some(admin), Some(password)) => {
            let hash = admin.password_hash.clone();
            let matches = blocking(move || security::verify_password(&password, &hash)).await?;
            if !matches {
                let password = settings.admin_password.clone().unwrap_or_default();
                let hash = blocking(move || security::hash_password(&password)).await?.map_err(StartupError::Setup)?;
                db.write(move |conn| Admin::set_password_hash(conn, admin.id, &hash)).await?;
                tracing::info!(user = ?username, "administrator password set from PROVISIOND_ADMIN_PASSWORD");
            }
        }
        (Some(_), None) => {}
        (None, configured) => {
            let generated = configured.is_none();
            let password = configured.unwrap_or_else(security::generate_password);
            let to_hash = password.clone();
            let hash = blocking(move || security::hash_password(&to_hash)).await?.map_err(StartupError::Setup)?;
            let user = username.clone();
            match db.write(move |conn| Admin::create(conn, &user, &hash, Role::Admin.as_str())).await {
                Ok(_) => {}
                // Another process sharing the database created it at the same moment.
                Err(e) if e.is_unique_violation() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            if generated {
                eprintln!(
                    "\n  provisiond: administrator `{username}` created with password: {password}\n  \
                     (shown once; set PROVISIOND_ADMIN_PASSWORD to choose your own)\n"
                );
            } else {
                tracing::info!(user = ?username, "administrator created");
            }
        }
    }
    Ok(())
}

/// The API token's hash: from PROVISIOND_API_TOKEN, or generated at first start and printed once.
async fn ensure_api_token(db: &Db, settings: &Settings) -> Result<String, StartupError> {
    if let Some(token) = settings.api_token.as_deref().filter(|t| !t.is_empty()) {
        if token.chars().count() < BOOTSTRAP_MIN_CHARS || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(StartupError::Setup(format!(
                "PROVISIOND_API_TOKEN must be at least {BOOTSTRAP_MIN_CHARS} characters, without spaces \
                 (it is an admin token: a short one can be guessed)"
            )));
        }
        return Ok(security::sha256_hex(token));
    }
    let stored = db.read(|conn| db::settings::get(conn, db::settings::API_TOKEN_SHA256)).await?;
    if let Some(hash) = stored {
        return Ok(hash);
    }
    let token = security::random_token();
    let hash = security::sha256_hex(&token);
    let to_store = hash.clone();
    let stored =
        db.write(move |conn| db::settings::insert_if_absent(conn, db::settings::API_TOKEN_SHA256, &to_store)).await?;
    if stored == hash {
        eprintln!(
            "\n  provisiond: API bearer token generated: {token}\n  \
             (shown once; set PROVISIOND_API_TOKEN to choose your own)\n"
        );
    }
    Ok(stored)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StartupError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StartupError::Setup(e.to_string()))
}
