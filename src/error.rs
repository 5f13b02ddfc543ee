//! Errors as users see them.
//!
//! The policy: a user sees a clear message that says what to do, never database
//! text or a stack trace. Bad input is answered 4xx and changes nothing. Every
//! 5xx is logged here, once, with its cause chain, and the user gets a generic
//! message. Pages answer with HTML ([`AppError`]), `/api/v1` with JSON ([`ApiError`]).

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use askama::Template;
use serde_json::json;

use crate::{
    db::DbError,
    diagnostics::cause_chain,
    domain::{FieldErrors, envelope::EnvelopeError},
    service::Refusal,
};

pub type AppResult<T> = Result<T, AppError>;
pub type ApiResult<T> = Result<T, ApiError>;

/// An error of an HTML page.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("Sign in to continue")]
    SignedOut { next: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("This form has expired or did not come from this site. Reload the page and try again.")]
    Csrf,
    /// The signed-in user's role may not do this; the message says what.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("The form is larger than {0} bytes.")]
    TooLarge(usize),
    #[error("The form took too long to arrive; send it again.")]
    TooSlow,
    #[error("The database is unavailable at the moment; try again in a few seconds.")]
    Unavailable(String),
    #[error("Something went wrong on the server; the details are in its log.")]
    Internal(String),
}

/// An error of the JSON API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The token's scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body took too long to arrive; nothing was stored")]
    TooSlow,
    #[error("{message}")]
    Unprocessable { message: String, errors: Option<FieldErrors> },
    #[error("the database is unavailable; nothing was stored: try again after the Retry-After seconds")]
    Unavailable(String),
    #[error("the server is shutting down; nothing was stored: try again, or another instance")]
    ShuttingDown,
    #[error("internal server error; the details are in the server's log")]
    Internal(String),
}

/// Seconds a client is told to wait (`Retry-After`) when the database is unavailable.
pub const RETRY_AFTER_SECS: u32 = 2;

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        if e.is_not_found() {
            AppError::NotFound("There is no such item; it may have been deleted.".into())
        } else if e.is_transient() {
            AppError::Unavailable(cause_chain(&e))
        } else {
            AppError::Internal(cause_chain(&e))
        }
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::Internal(format!("template: {}", cause_chain(&e)))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_not_found() {
            ApiError::NotFound("not found".into())
        } else if e.is_transient() {
            ApiError::Unavailable(cause_chain(&e))
        } else {
            ApiError::Internal(cause_chain(&e))
        }
    }
}

/// A refused change, as the JSON API answers it.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(errors) => ApiError::Unprocessable {
                message: "the input is not valid; see `errors` by field".into(),
                errors: Some(errors),
            },
            Refusal::Forbidden(_) => ApiError::Forbidden(refusal.to_string()),
            Refusal::Conflict(m) => ApiError::Conflict(m),
            Refusal::Internal(m) => ApiError::Internal(m),
            Refusal::Envelope(EnvelopeError::Malformed(m)) => ApiError::BadRequest(m),
            Refusal::Envelope(EnvelopeError::Invalid(m)) => ApiError::Unprocessable { message: m, errors: None },
            Refusal::NotFound(_) => ApiError::NotFound(refusal.to_string()),
            Refusal::NotFinished(_) | Refusal::AlreadyRunning(_) => ApiError::Conflict(refusal.to_string()),
            Refusal::KeyReused(_) => ApiError::Unprocessable { message: refusal.to_string(), errors: None },
            Refusal::ShuttingDown => ApiError::ShuttingDown,
            Refusal::Db(e) => e.into(),
        }
    }
}

/// A refused change, as a page answers it when the page has no better way
/// (a form shows its own errors, a retry its flash message).
impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound(missing) => {
                AppError::NotFound(format!("There is no {missing}; it may have been deleted."))
            }
            Refusal::Db(e) => e.into(),
            Refusal::Forbidden(m) => AppError::Forbidden(format!("You may not do this: {m}.")),
            Refusal::Conflict(m) => AppError::Conflict(format!("{}.", capitalized(&m))),
            Refusal::AlreadyRunning(_) => AppError::Conflict(format!("{}.", capitalized(&refusal.to_string()))),
            Refusal::Internal(m) => AppError::Internal(m),
            Refusal::ShuttingDown => AppError::Unavailable(refusal.to_string()),
            Refusal::Invalid(_) | Refusal::Envelope(_) | Refusal::NotFinished(_) | Refusal::KeyReused(_) => {
                AppError::BadRequest(format!("{}.", capitalized(&refusal.to_string())))
            }
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::SignedOut { .. } => StatusCode::SEE_OTHER,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Csrf | AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::SignedOut { next } = self {
            let location = format!("/login?{}", serde_urlencoded::to_string([("next", next)]).unwrap_or_default());
            return HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish();
        }
        match self {
            AppError::Internal(cause) => tracing::error!(%cause, "request failed"),
            AppError::Unavailable(cause) => tracing::warn!(%cause, "request answered 503: the database is unavailable"),
            _ => {}
        }
        let status = self.status_code();
        let page = ErrorPage { title: status.canonical_reason().unwrap_or("Error"), message: self.to_string() };
        let body = page.render().unwrap_or_else(|_| self.to_string());
        let mut response = HttpResponse::build(status);
        match self {
            AppError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            // The rest of the body is not read: the connection cannot carry another request.
            AppError::TooLarge(_) | AppError::TooSlow => {
                response.insert_header((header::CONNECTION, "close"));
            }
            _ => {}
        }
        response.content_type("text/html; charset=utf-8").body(body)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(%cause, "API request failed"),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "API request answered 503: the database is unavailable")
            }
            _ => {}
        }
        let mut body = json!({ "error": self.to_string() });
        if let ApiError::Unprocessable { errors: Some(errors), .. } = self {
            body["errors"] = json!(errors);
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            ApiError::ShuttingDown => {
                response.insert_header((header::RETRY_AFTER, "1")).insert_header((header::CONNECTION, "close"));
            }
            // The rest of the body is not read: the connection cannot carry
            // another request, and a client must not reuse it.
            ApiError::TooLarge(_) | ApiError::TooSlow => {
                response.insert_header((header::CONNECTION, "close"));
            }
            _ => {}
        }
        response.json(body)
    }
}
