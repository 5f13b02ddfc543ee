//! The signed-in administrator and CSRF-checked forms, as request extractors.

use std::{future::Future, pin::Pin};

use actix_web::{
    FromRequest, HttpRequest,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    dev::Payload,
    web,
};
use chrono::TimeDelta;
use serde::de::DeserializeOwned;

use crate::{
    db::{now, sessions::Session},
    error::{AppError, AppResult},
    security,
    service::{Actor, AppState, Role},
};

/// The cookies of the UI, by name. Behind TLS (`PROVISIOND_SECURE_COOKIES`)
/// they carry the `__Host-` prefix: the browser then takes them only from a
/// secure origin, for path `/`, from this host alone.
#[derive(Debug, Clone, Copy)]
pub enum CookieName {
    Session,
    LoginCsrf,
}

impl CookieName {
    pub fn of(self, state: &AppState) -> &'static str {
        match (self, state.settings.secure_cookies) {
            (CookieName::Session, false) => "provisiond_session",
            (CookieName::Session, true) => "__Host-provisiond_session",
            (CookieName::LoginCsrf, false) => "provisiond_login_csrf",
            (CookieName::LoginCsrf, true) => "__Host-provisiond_login_csrf",
        }
    }
}

/// The signed-in user of a request, with the session's CSRF token and any
/// flash message left by the previous request (taken, so shown once).
#[derive(Debug, Clone)]
pub struct CurrentAdmin {
    pub token_hash: String,
    pub csrf_token: String,
    pub flash: Option<String>,
    /// Who this is, for every right checked ([`Actor::must`]).
    pub actor: Actor,
}

impl CurrentAdmin {
    /// Leaves a message for the next page this administrator sees.
    pub async fn flash(&self, state: &AppState, message: String) -> AppResult<()> {
        let hash = self.token_hash.clone();
        state.db.write(move |conn| Session::set_flash(conn, &hash, Some(&message))).await?;
        Ok(())
    }

    async fn load(req: HttpRequest) -> AppResult<Self> {
        let signed_out = || AppError::SignedOut { next: local_path(&req) };
        let state = app_state(&req)?;
        let token = req.cookie(CookieName::Session.of(&state)).ok_or_else(signed_out)?.value().to_owned();
        let hash = security::sha256_hex(&token);
        let ttl = TimeDelta::from_std(state.settings.session_ttl).unwrap_or(TimeDelta::hours(12));
        let max_age = TimeDelta::from_std(state.settings.session_max_age).unwrap_or(TimeDelta::hours(24));
        let lookup = hash.clone();
        let (session, admin) =
            state.db.read(move |conn| Session::find_live(conn, &lookup, max_age)).await?.ok_or_else(signed_out)?;
        let role = admin
            .role
            .parse::<Role>()
            .map_err(|e| AppError::Internal(format!("user {} has an unknown role: {e}", admin.id)))?;
        let actor = Actor::User { id: admin.id, name: admin.username, role };
        // The flash is shown once; the expiry slides, at most once per tenth
        // of the lifetime.
        let (shown, slide) = (session.flash.is_some(), session.expires_at - now() < ttl - ttl / 10);
        if shown || slide {
            state
                .db
                .write(move |conn| {
                    if shown {
                        Session::set_flash(conn, &hash, None)?;
                    }
                    if slide {
                        Session::extend(conn, &hash, now() + ttl)?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(Self { token_hash: session.token_hash, csrf_token: session.csrf_token, flash: session.flash, actor })
    }

    /// True when `token` is this session's CSRF token.
    pub fn csrf_ok(&self, token: &str) -> bool {
        security::constant_time_eq(self.csrf_token.as_bytes(), token.as_bytes())
    }
}

impl FromRequest for CurrentAdmin {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = AppResult<Self>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(Self::load(req.clone()))
    }
}

/// A urlencoded form from a signed-in administrator whose `csrf_token` field
/// matches the session; anything else is refused (403) before the form is read.
pub struct CsrfForm<T> {
    pub admin: CurrentAdmin,
    pub form: T,
}

/// The largest form accepted.
pub const FORM_LIMIT: usize = 256 * 1024;
/// How long a form's body may take to arrive.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = AppResult<Self>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let admin = CurrentAdmin::load(req.clone());
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            // The body is read first, even for a refused request, so the
            // connection stays usable for the next one.
            let body = tokio::time::timeout(BODY_READ_TIMEOUT, body)
                .await
                .map_err(|_| AppError::TooSlow)?
                .map_err(|e| AppError::BadRequest(format!("The form could not be read: {e}")))?;
            let admin = admin.await?;
            if body.len() > FORM_LIMIT {
                return Err(AppError::TooLarge(FORM_LIMIT));
            }
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
                .map_err(|_| AppError::BadRequest("The form could not be read.".into()))?;
            if pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
                return Err(AppError::BadRequest("The form contains a NUL character; no field may.".into()));
            }
            let token = pairs.iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.as_str());
            if !token.is_some_and(|t| admin.csrf_ok(t)) {
                return Err(AppError::Csrf);
            }
            let form = serde_urlencoded::from_bytes(&body)
                .map_err(|e| AppError::BadRequest(format!("The form could not be read: {e}")))?;
            Ok(Self { admin, form })
        })
    }
}

pub fn app_state(req: &HttpRequest) -> AppResult<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| AppError::Internal("application state missing".into()))
}

/// The path and query of a request, to come back to after signing in.
fn local_path(req: &HttpRequest) -> String {
    if req.method() == actix_web::http::Method::GET {
        req.uri().path_and_query().map_or("/provisioning".into(), |p| p.as_str().to_owned())
    } else {
        "/provisioning".into()
    }
}

/// A redirect target that stays on this site: a path, never `//host` or a URL.
pub fn safe_local(target: &str, fallback: &str) -> String {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.chars().any(|c| c.is_control());
    if ok { target.to_owned() } else { fallback.to_owned() }
}

/// A cookie with the house attributes: HttpOnly, SameSite=Strict, path `/`,
/// `Secure` behind TLS.
pub fn cookie(state: &AppState, name: CookieName, value: String, max_age: Option<CookieDuration>) -> Cookie<'static> {
    let mut c = Cookie::build(name.of(state), value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.secure_cookies)
        .finish();
    if let Some(age) = max_age {
        c.set_max_age(age);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::safe_local;

    #[test]
    fn redirects_stay_on_the_site() {
        assert_eq!(safe_local("/provisioning?status=archived", "/"), "/provisioning?status=archived");
        for bad in ["//evil.example", "https://evil.example", "/\\evil.example", "", "provisioning"] {
            assert_eq!(safe_local(bad, "/x"), "/x", "{bad}");
        }
    }
}
