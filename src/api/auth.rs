//! The bearer token of `/api/v1`.

use std::{future::Ready, future::ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};

use crate::{error::ApiError, security, service::AppState};

/// Proof that the request carried the API token.
pub struct ApiClient;

impl FromRequest for ApiClient {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req))
    }
}

fn check(req: &HttpRequest) -> Result<ApiClient, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or(ApiError::Internal("state missing".into()))?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let hash = security::sha256_hex(token);
    if security::constant_time_eq(hash.as_bytes(), state.api_token_hash.as_bytes()) {
        Ok(ApiClient)
    } else {
        Err(ApiError::Unauthorized)
    }
}
