//! `/api/v1/tokens`: named, scoped API tokens (DESIGN §8.3), for admin tokens.

use actix_web::{HttpResponse, web};

use super::{
    auth::ApiClient,
    parse_id, read_json_object,
    shapes::{TokenCreated, TokenList, TokenOut},
};
use crate::{
    db::tokens::ApiToken,
    error::{ApiError, ApiResult},
    service::{Action, AppState, tokens::NewToken},
};

/// `GET /api/v1/tokens`: every token, live first; never a token itself.
pub async fn list_tokens(client: ApiClient, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    client.actor.must(Action::ManageTokens)?;
    let tokens = state.db.read(ApiToken::list).await?;
    Ok(HttpResponse::Ok().json(TokenList { tokens: tokens.into_iter().map(TokenOut::from).collect() }))
}

/// `POST /api/v1/tokens` `{"name", "scope"}` → 201 with the token, shown this once.
pub async fn create_token(
    client: ApiClient,
    state: web::Data<AppState>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    client.actor.must(Action::ManageTokens)?;
    let body = read_json_object(body, state.settings.max_body_bytes).await?;
    let text = |key: &str| match body.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(_) => Err(ApiError::Unprocessable { message: format!("`{key}` must be a string"), errors: None }),
    };
    let new = NewToken { name: text("name")?, scope: text("scope")? };
    let (token, secret) = state.create_token(&client.actor, &new).await?;
    Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(TokenCreated {
        id: token.id,
        name: token.name,
        scope: token.scope,
        token: secret,
    }))
}

/// `DELETE /api/v1/tokens/{id}` → 204: the token is revoked.
pub async fn revoke_token(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.revoke_token(&client.actor, parse_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}
