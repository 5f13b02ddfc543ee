//! Sign-in and sign-out of the administrator.

use actix_web::{
    HttpRequest, HttpResponse, cookie::time::Duration as CookieDuration, get, http::StatusCode, http::header, post, web,
};
use askama::Template;
use chrono::TimeDelta;
use serde::Deserialize;

use super::session::{CookieName, CsrfForm, cookie, safe_local};
use crate::{
    db::{now, sessions::Session},
    error::{AppError, AppResult},
    security,
    service::{AppState, accounts::SignIn},
};

#[derive(Template)]
#[template(path = "auth/login.html")]
pub struct LoginPage {
    pub csrf_token: String,
    pub username: String,
    pub next: String,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct LoginQuery {
    next: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf_token: String,
    next: String,
}

/// The sign-in form. Before a session exists, its CSRF token is a
/// double-submit cookie: the form's hidden field must equal the cookie.
#[get("/login")]
pub async fn login_form(state: web::Data<AppState>, query: web::Query<LoginQuery>) -> AppResult<HttpResponse> {
    let token = security::random_token();
    let page = LoginPage {
        csrf_token: token.clone(),
        username: String::new(),
        next: safe_local(&query.next, "/provisioning"),
        error: None,
    };
    Ok(HttpResponse::Ok()
        .cookie(cookie(&state, CookieName::LoginCsrf, token, Some(CookieDuration::hours(2))))
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

#[post("/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let next = safe_local(&form.next, "/provisioning");
    let cookie_token = req.cookie(CookieName::LoginCsrf.of(&state)).map(|c| c.value().to_owned()).unwrap_or_default();
    if cookie_token.is_empty() || !security::constant_time_eq(cookie_token.as_bytes(), form.csrf_token.as_bytes()) {
        return Err(AppError::Csrf);
    }
    let username = form.username.trim().to_owned();
    let client = req.peer_addr().map(|a| a.ip());
    let admin = match state.sign_in(&username, form.password, client).await? {
        SignIn::Accepted(admin) => admin,
        refused => {
            // `?`: the name as typed, quoted and escaped — a newline in it
            // cannot forge a line of the server's log.
            tracing::warn!(user = ?username, client = ?client, "failed sign-in");
            let (status, error) = match refused {
                SignIn::Locked { until } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed sign-ins: signing in is locked until {} UTC, even with the right password.",
                        until.format("%Y-%m-%d %H:%M:%S")
                    ),
                ),
                _ => (StatusCode::OK, "Wrong user name or password.".to_owned()),
            };
            let page = LoginPage { csrf_token: cookie_token, username, next, error: Some(error) };
            return super::render(status, &page);
        }
    };
    let session = start_session(&state, admin.id).await?;
    tracing::info!(user = ?admin.username, "signed in");
    let mut gone = cookie(&state, CookieName::LoginCsrf, String::new(), None);
    gone.make_removal();
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, next)).cookie(session).cookie(gone).finish())
}

/// A new session for user `admin_id`: its cookie, with a new random id.
pub async fn start_session(state: &AppState, admin_id: i64) -> AppResult<actix_web::cookie::Cookie<'static>> {
    let token = security::random_token();
    let (hash, csrf) = (security::sha256_hex(&token), security::random_token());
    let ttl = TimeDelta::from_std(state.settings.session_ttl).unwrap_or(TimeDelta::hours(12));
    state.db.write(move |conn| Session::create(conn, &hash, admin_id, &csrf, now() + ttl)).await?;
    Ok(cookie(state, CookieName::Session, token, None))
}

#[derive(Debug, Deserialize, Default)]
pub struct NoFields {}

#[post("/logout")]
pub async fn logout(state: web::Data<AppState>, form: CsrfForm<NoFields>) -> AppResult<HttpResponse> {
    let hash = form.admin.token_hash.clone();
    state.db.write(move |conn| Session::delete(conn, &hash)).await?;
    let mut gone = cookie(&state, CookieName::Session, String::new(), None);
    gone.make_removal();
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).cookie(gone).finish())
}
