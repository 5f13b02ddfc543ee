//! The bearer token of `/api/v1`: a named, scoped token or the bootstrap one.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::Method, web};

use crate::{
    error::ApiError,
    security,
    service::{Action, Actor, AppState},
};

/// The actor of an API request. A read (GET, HEAD) is checked here for
/// [`Action::Read`]; every change is checked by its use case.
pub struct ApiClient {
    pub actor: Actor,
}

impl FromRequest for ApiClient {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state =
                req.app_data::<web::Data<AppState>>().ok_or(ApiError::Internal("state missing".into()))?.clone();
            let actor = authenticate(&req, &state).await?.ok_or(ApiError::Unauthorized)?;
            if matches!(*req.method(), Method::GET | Method::HEAD) {
                actor.must(Action::Read)?;
            }
            Ok(ApiClient { actor })
        })
    }
}

/// The actor of the request's `Authorization: Bearer` token, if it is valid.
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Option<Actor>, ApiError> {
    match security::bearer_token(req.headers()) {
        Some(token) => Ok(state.authenticate(token).await?),
        None => Ok(None),
    }
}
