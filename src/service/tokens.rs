//! API tokens (DESIGN §8.3): named, scoped, shown once, stored hashed,
//! compared in constant time, their last use recorded; and the bootstrap
//! `admin` token of `PROVISIOND_API_TOKEN`.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::json;

use super::{
    AppState, Missing, Refusal,
    access::{Action, Actor, Scope},
    audit,
};
use crate::{
    db::{now, tokens::ApiToken},
    domain::FieldErrors,
    security,
};

/// Every named token starts so; the characters after it up to
/// [`PREFIX_CHARS`] find its row.
pub const TOKEN_PREFIX: &str = "pvd_";
const PREFIX_CHARS: usize = 12;
const NAME_MAX_CHARS: usize = 100;
/// The shortest `PROVISIOND_API_TOKEN` accepted.
pub const BOOTSTRAP_MIN_CHARS: usize = 24;
/// The name the bootstrap token has in the audit log.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// How long a token checked against the database is believed without
/// another look: a revocation reaches the other instances within this (on
/// this one it is at once).
const CACHE_FOR: Duration = Duration::from_secs(2);
/// At most one write of a token's last use per this.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The cache is emptied when it holds this many tokens (guessed ones too).
const CACHE_MAX: usize = 10_000;

/// Tokens recently checked (by hash) and when each was last recorded as used.
#[derive(Default)]
pub(super) struct TokenCache {
    checked: Mutex<HashMap<String, (Option<Actor>, Instant)>>,
    touched: Mutex<HashMap<i64, Instant>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Option<Actor>> {
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked.get(hash).filter(|(_, at)| at.elapsed() < CACHE_FOR).map(|(actor, _)| actor.clone())
    }

    fn put(&self, hash: String, actor: Option<Actor>) {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.len() >= CACHE_MAX {
            checked.clear();
        }
        checked.insert(hash, (actor, Instant::now()));
    }

    fn forget_all(&self) {
        self.checked.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// True when token `id`'s use should be written now.
    fn due_for_touch(&self, id: i64) -> bool {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        let due = touched.get(&id).is_none_or(|at| at.elapsed() >= TOUCH_EVERY);
        if due {
            touched.insert(id, Instant::now());
        }
        due
    }
}

/// A new token as the form or the API gives it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct NewToken {
    pub name: String,
    pub scope: String,
}

impl AppState {
    /// A new token (admins only); returns its row and the token itself, which
    /// is never shown again.
    pub async fn create_token(&self, actor: &Actor, new: &NewToken) -> Result<(ApiToken, String), Refusal> {
        actor.must(Action::ManageTokens)?;
        let mut errors = FieldErrors::default();
        let name = new.name.trim().to_owned();
        errors.check_name("name", &name, NAME_MAX_CHARS);
        let scope = new.scope.trim().parse::<Scope>().map_err(|e| errors.add("scope", format!("The scope {e}"))).ok();
        let Some(scope) = scope.filter(|_| errors.is_empty()) else { return Err(Refusal::Invalid(errors)) };
        let secret = format!("{TOKEN_PREFIX}{}", security::random_token());
        let (prefix, hash) = (secret[..PREFIX_CHARS].to_owned(), security::sha256_hex(&secret));
        let actor = actor.clone();
        let created = self
            .db
            .write(move |conn| {
                let token = ApiToken::create(conn, &name, scope.as_str(), &prefix, &hash, &actor.audit_name())?;
                let changes =
                    json!({"name": {"old": null, "new": token.name}, "scope": {"old": null, "new": token.scope}});
                audit::record(conn, &actor, "token.create", &token_target(&token), changes)?;
                Ok(token)
            })
            .await;
        match created {
            Ok(token) => {
                tracing::info!(token = token.id, name = ?token.name, scope = %token.scope, "API token created");
                Ok((token, secret))
            }
            Err(e) if e.is_unique_violation() => {
                let mut errors = FieldErrors::default();
                errors.add("name", "A token has this name already");
                Err(Refusal::Invalid(errors))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes token `id` (admins only): it stops working at once here and
    /// within seconds on every other instance.
    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<ApiToken, Refusal> {
        actor.must(Action::ManageTokens)?;
        let actor = actor.clone();
        let revoked = self
            .db
            .write(move |conn| {
                let Some(token) = ApiToken::revoke(conn, id)? else { return Ok(None) };
                let changes = json!({"revoked": {"old": false, "new": true}});
                audit::record(conn, &actor, "token.revoke", &token_target(&token), changes)?;
                Ok(Some(token))
            })
            .await
            .map_err(Refusal::or_missing(Missing::Token(id)))?;
        self.tokens.forget_all();
        let token = revoked.ok_or_else(|| Refusal::Conflict(format!("token {id} is revoked already")))?;
        tracing::info!(token = token.id, name = ?token.name, "API token revoked");
        Ok(token)
    }

    /// The actor a bearer token stands for, or `None` for no valid token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Actor>, Refusal> {
        let hash = security::sha256_hex(token);
        if security::constant_time_eq(hash.as_bytes(), self.api_token_hash.as_bytes()) {
            return Ok(Some(Actor::Token { id: None, name: BOOTSTRAP_NAME.into(), scope: Scope::Admin }));
        }
        if !token.starts_with(TOKEN_PREFIX) || token.len() < PREFIX_CHARS || !token.is_ascii() {
            return Ok(None);
        }
        let actor = match self.tokens.get(&hash) {
            Some(actor) => actor,
            None => {
                let prefix = token[..PREFIX_CHARS].to_owned();
                let rows = self.db.read(move |conn| ApiToken::live_with_prefix(conn, &prefix)).await?;
                let actor = rows
                    .into_iter()
                    .find(|row| security::constant_time_eq(row.token_hash.as_bytes(), hash.as_bytes()))
                    .and_then(|row| {
                        let scope = row.scope.parse::<Scope>().ok()?;
                        Some(Actor::Token { id: Some(row.id), name: row.name, scope })
                    });
                self.tokens.put(hash, actor.clone());
                actor
            }
        };
        if let Some(Actor::Token { id: Some(id), .. }) = &actor
            && self.tokens.due_for_touch(*id)
        {
            let (db, id, at) = (self.db.clone(), *id, now());
            // The last use is bookkeeping: the request does not wait for it.
            tokio::spawn(async move {
                if let Err(e) = db.bookkeep(move |conn| ApiToken::touch(conn, id, at)).await {
                    tracing::warn!(token = id, error = %crate::diagnostics::cause_chain(&e), "cannot record a token's last use");
                }
            });
        }
        Ok(actor)
    }
}

fn token_target(token: &ApiToken) -> String {
    format!("token {} ({})", token.id, token.name)
}
