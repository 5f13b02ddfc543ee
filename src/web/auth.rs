//! Sign-in and sign-out of the administrator.

use actix_web::{HttpRequest, HttpResponse, cookie::time::Duration as CookieDuration, get, http::header, post, web};
use askama::Template;
use chrono::TimeDelta;
use serde::Deserialize;

use super::session::{CsrfForm, SESSION_COOKIE, cookie, safe_local};
use crate::{
    db::{admins::Admin, now, sessions::Session},
    error::{AppError, AppResult},
    security,
    service::AppState,
};

const LOGIN_CSRF_COOKIE: &str = "provisiond_login_csrf";

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
        .cookie(cookie(&state, LOGIN_CSRF_COOKIE, token, Some(CookieDuration::hours(2))))
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
    let cookie_token = req.cookie(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if cookie_token.is_empty() || !security::constant_time_eq(cookie_token.as_bytes(), form.csrf_token.as_bytes()) {
        return Err(AppError::Csrf);
    }
    let username = form.username.trim().to_owned();
    let lookup = username.clone();
    // No user name holds a NUL (PostgreSQL could not even look it up).
    let admin = if lookup.contains('\0') {
        None
    } else {
        state.db.read(move |conn| Admin::find_by_username(conn, &lookup)).await?
    };
    let password = form.password;
    let verified = web::block(move || {
        // Hash even for an unknown user so timing does not tell which names exist.
        let hash = admin.as_ref().map(|a| a.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.to_owned());
        admin.filter(|_| security::verify_password(&password, &hash))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;

    let Some(admin) = verified else {
        tracing::warn!(user = %username, "failed sign-in");
        let page =
            LoginPage { csrf_token: cookie_token, username, next, error: Some("Wrong user name or password.".into()) };
        return Ok(HttpResponse::Unauthorized().content_type("text/html; charset=utf-8").body(page.render()?));
    };

    let token = security::random_token();
    let (hash, csrf) = (security::sha256_hex(&token), security::random_token());
    let ttl = TimeDelta::from_std(state.settings.session_ttl).unwrap_or(TimeDelta::hours(12));
    state.db.write(move |conn| Session::create(conn, &hash, admin.id, &csrf, now() + ttl)).await?;
    tracing::info!(user = %admin.username, "signed in");
    let mut gone = cookie(&state, LOGIN_CSRF_COOKIE, String::new(), None);
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .cookie(cookie(&state, SESSION_COOKIE, token, None))
        .cookie(gone)
        .finish())
}

#[derive(Debug, Deserialize, Default)]
pub struct NoFields {}

#[post("/logout")]
pub async fn logout(state: web::Data<AppState>, form: CsrfForm<NoFields>) -> AppResult<HttpResponse> {
    let hash = form.admin.token_hash.clone();
    state.db.write(move |conn| Session::delete(conn, &hash)).await?;
    let mut gone = cookie(&state, SESSION_COOKIE, String::new(), None);
    gone.make_removal();
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).cookie(gone).finish())
}

/// An argon2id hash of a random password nobody knows, verified against when
/// the user name does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Qm2mIfuwHgZ5iZ9Qf5CJ0Ae6ZG0SYLO2v4b0j3Z3wA";
