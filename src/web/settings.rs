//! Settings pages (DESIGN §8.3): user accounts, one's own password, API tokens.

use actix_web::{HttpResponse, get, http::StatusCode, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    auth::start_session,
    render, see_other,
    session::{CsrfForm, CurrentAdmin},
    views::Layout,
    views::utc,
};
use crate::{
    db::{admins::Admin, tokens::ApiToken},
    domain::FieldErrors,
    error::AppResult,
    service::{
        Action, AppState, Refusal, Role, Scope,
        accounts::{NewUser, PASSWORD_MIN_CHARS},
        tokens::NewToken,
    },
};

/// One account as the users page lists it.
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub created_at: String,
    pub is_self: bool,
}

#[derive(Template)]
#[template(path = "settings/users.html")]
pub struct UsersPage {
    pub layout: Layout,
    pub users: Vec<UserRow>,
    pub roles: &'static [Role],
    /// The new-account form as typed (the password never shown back).
    pub new_username: String,
    pub new_role: String,
    pub errors: FieldErrors,
    /// The account a failed change was for, with its messages.
    pub row_errors: Option<(i64, FieldErrors)>,
    pub password_min: usize,
}

impl UsersPage {
    async fn load(state: &AppState, admin: &CurrentAdmin) -> AppResult<Self> {
        admin.actor.must(Action::ManageUsers)?;
        let own = match &admin.actor {
            crate::service::Actor::User { id, .. } => Some(*id),
            crate::service::Actor::Token { .. } => None,
        };
        let users = state.db.read(Admin::list).await?;
        Ok(Self {
            layout: Layout::new(admin, "Users", "users"),
            users: users
                .into_iter()
                .map(|u| UserRow {
                    is_self: Some(u.id) == own,
                    id: u.id,
                    username: u.username,
                    role: u.role,
                    created_at: utc(u.created_at),
                })
                .collect(),
            roles: Role::ALL,
            new_username: String::new(),
            new_role: Role::Viewer.as_str().into(),
            errors: FieldErrors::default(),
            row_errors: None,
            password_min: PASSWORD_MIN_CHARS,
        })
    }
}

#[get("/settings/users")]
pub async fn list_users(state: web::Data<AppState>, admin: CurrentAdmin) -> AppResult<HttpResponse> {
    render(StatusCode::OK, &UsersPage::load(&state, &admin).await?)
}

#[post("/settings/users")]
pub async fn create_user(state: web::Data<AppState>, input: CsrfForm<NewUser>) -> AppResult<HttpResponse> {
    let CsrfForm { admin, form } = input;
    match state.create_user(&admin.actor, &form).await {
        Ok(user) => {
            admin.flash(&state, format!("User “{}” created with role {}.", user.username, user.role)).await?;
            Ok(see_other("/settings/users"))
        }
        Err(Refusal::Invalid(errors)) => {
            let page = UsersPage {
                new_username: form.username,
                new_role: form.role,
                errors,
                ..UsersPage::load(&state, &admin).await?
            };
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(refusal) => Err(refusal.into()),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct UserChange {
    role: String,
    password: String,
}

#[post("/settings/users/{id:\\d+}")]
pub async fn update_user(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<UserChange>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let CsrfForm { admin, form } = input;
    match state.update_user(&admin.actor, id, &form.role, Some(&form.password)).await {
        Ok(user) => {
            // One's own role or password changed: this session ended with the
            // others; a new one keeps the user signed in as what they now are.
            let own = matches!(&admin.actor, crate::service::Actor::User { id: own, .. } if *own == id);
            let message = format!("User “{}” saved (role {}); their sessions have ended.", user.username, user.role);
            if own {
                let next = if user.role == Role::Admin.as_str() { "/settings/users" } else { "/provisioning" };
                let cookie = start_session(&state, id).await?;
                return Ok(HttpResponse::SeeOther()
                    .insert_header((actix_web::http::header::LOCATION, next))
                    .cookie(cookie)
                    .finish());
            }
            admin.flash(&state, message).await?;
            Ok(see_other("/settings/users"))
        }
        Err(Refusal::Invalid(errors)) => {
            let page = UsersPage { row_errors: Some((id, errors)), ..UsersPage::load(&state, &admin).await? };
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(refusal) => Err(refusal.into()),
    }
}

#[derive(Template)]
#[template(path = "settings/delete_user.html")]
pub struct DeleteUserPage {
    pub layout: Layout,
    pub user: Admin,
}

#[get("/settings/users/{id:\\d+}/delete")]
pub async fn confirm_delete_user(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    admin.actor.must(Action::ManageUsers)?;
    let id = id.into_inner();
    let user = state.db.read(move |conn| Admin::find(conn, id)).await?;
    let layout = Layout::new(&admin, format!("Delete user {}", user.username), "users");
    render(StatusCode::OK, &DeleteUserPage { layout, user })
}

#[derive(Debug, Deserialize, Default)]
pub struct NoFields {}

#[post("/settings/users/{id:\\d+}/delete")]
pub async fn delete_user(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<NoFields>,
) -> AppResult<HttpResponse> {
    let user = state.delete_user(&input.admin.actor, id.into_inner()).await?;
    input.admin.flash(&state, format!("User “{}” deleted; their sessions have ended.", user.username)).await?;
    Ok(see_other("/settings/users"))
}

#[derive(Template)]
#[template(path = "settings/password.html")]
pub struct PasswordPage {
    pub layout: Layout,
    pub errors: FieldErrors,
    pub password_min: usize,
}

#[get("/settings/password")]
pub async fn password_form(admin: CurrentAdmin) -> AppResult<HttpResponse> {
    let layout = Layout::new(&admin, "Change your password", "password");
    render(StatusCode::OK, &PasswordPage { layout, errors: FieldErrors::default(), password_min: PASSWORD_MIN_CHARS })
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// A new password for the signed-in user: every session of theirs ends, and
/// this browser gets a new one.
#[post("/settings/password")]
pub async fn change_password(state: web::Data<AppState>, input: CsrfForm<PasswordChange>) -> AppResult<HttpResponse> {
    let CsrfForm { admin, form } = input;
    match state.change_own_password(&admin.actor, &form.current_password, &form.new_password).await {
        Ok(()) => {
            let crate::service::Actor::User { id, .. } = admin.actor else { unreachable!("a session is a user's") };
            let cookie = start_session(&state, id).await?;
            Ok(HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, "/provisioning"))
                .cookie(cookie)
                .finish())
        }
        Err(Refusal::Invalid(errors)) => {
            let layout = Layout::new(&admin, "Change your password", "password");
            render(StatusCode::UNPROCESSABLE_ENTITY, &PasswordPage { layout, errors, password_min: PASSWORD_MIN_CHARS })
        }
        Err(refusal) => Err(refusal.into()),
    }
}

/// One token as the tokens page lists it.
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub prefix: String,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: String,
    pub revoked_at: Option<String>,
}

impl From<ApiToken> for TokenRow {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scope: t.scope,
            prefix: t.prefix,
            created_by: t.created_by,
            created_at: utc(t.created_at),
            last_used_at: t.last_used_at.map_or_else(|| "never".into(), utc),
            revoked_at: t.revoked_at.map(utc),
        }
    }
}

#[derive(Template)]
#[template(path = "settings/tokens.html")]
pub struct TokensPage {
    pub layout: Layout,
    pub tokens: Vec<TokenRow>,
    pub scopes: &'static [Scope],
    pub new_name: String,
    pub new_scope: String,
    pub errors: FieldErrors,
    /// The token just created: shown this once.
    pub created: Option<(String, String)>,
}

impl TokensPage {
    async fn load(state: &AppState, admin: &CurrentAdmin) -> AppResult<Self> {
        admin.actor.must(Action::ManageTokens)?;
        let tokens = state.db.read(ApiToken::list).await?;
        Ok(Self {
            layout: Layout::new(admin, "API tokens", "tokens"),
            tokens: tokens.into_iter().map(TokenRow::from).collect(),
            scopes: Scope::ALL,
            new_name: String::new(),
            new_scope: Scope::Ingest.as_str().into(),
            errors: FieldErrors::default(),
            created: None,
        })
    }
}

#[get("/settings/tokens")]
pub async fn list_tokens(state: web::Data<AppState>, admin: CurrentAdmin) -> AppResult<HttpResponse> {
    render(StatusCode::OK, &TokensPage::load(&state, &admin).await?)
}

/// Creates a token and shows it, this once (the answer is not stored anywhere).
#[post("/settings/tokens")]
pub async fn create_token(state: web::Data<AppState>, input: CsrfForm<NewToken>) -> AppResult<HttpResponse> {
    let CsrfForm { admin, form } = input;
    match state.create_token(&admin.actor, &form).await {
        Ok((token, secret)) => {
            let page = TokensPage { created: Some((token.name, secret)), ..TokensPage::load(&state, &admin).await? };
            render(StatusCode::CREATED, &page)
        }
        Err(Refusal::Invalid(errors)) => {
            let page = TokensPage {
                new_name: form.name,
                new_scope: form.scope,
                errors,
                ..TokensPage::load(&state, &admin).await?
            };
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(refusal) => Err(refusal.into()),
    }
}

#[post("/settings/tokens/{id:\\d+}/revoke")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<NoFields>,
) -> AppResult<HttpResponse> {
    let token = state.revoke_token(&input.admin.actor, id.into_inner()).await?;
    input.admin.flash(&state, format!("Token “{}” revoked: it no longer works.", token.name)).await?;
    Ok(see_other("/settings/tokens"))
}
