//! User accounts (DESIGN §8.3): created, changed and deleted by admins; every
//! user's own password; sign-in with throttling and lockout.

use std::net::IpAddr;

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;

use super::{
    AppState, Missing, Refusal,
    access::{Action, Actor, Role},
    audit,
};
use crate::{
    db::{
        admins::Admin,
        now,
        signins::{self, Failures},
    },
    domain::FieldErrors,
    security,
};

/// The shortest password accepted.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The longest password accepted (argon2 reads all of it).
const PASSWORD_MAX_CHARS: usize = 1024;
const USERNAME_MAX_CHARS: usize = 100;

/// A new account, as the form or the API gives it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: String,
}

/// The answer to a sign-in.
#[derive(Debug)]
pub enum SignIn {
    Accepted(Admin),
    /// Wrong user name or password.
    Refused,
    /// Too many failures: no sign-in for this user name (or from this
    /// address) before `until`, not even with the right password.
    Locked {
        until: NaiveDateTime,
    },
}

fn check_password(errors: &mut FieldErrors, field: &str, password: &str) {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        errors.add(field, format!("The password must be at least {PASSWORD_MIN_CHARS} characters"));
    } else if chars > PASSWORD_MAX_CHARS {
        errors.add(field, format!("The password must be at most {PASSWORD_MAX_CHARS} characters"));
    }
}

fn parse_role(errors: &mut FieldErrors, role: &str) -> Option<Role> {
    role.parse::<Role>().map_err(|e| errors.add("role", format!("The role {e}"))).ok()
}

/// How the audit log names an account.
fn user_target(admin: &Admin) -> String {
    format!("user {} ({})", admin.id, admin.username)
}

async fn hash(password: String) -> Result<String, Refusal> {
    tokio::task::spawn_blocking(move || security::hash_password(&password))
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .map_err(Refusal::Internal)
}

impl AppState {
    /// A new account (admins only).
    pub async fn create_user(&self, actor: &Actor, new: &NewUser) -> Result<Admin, Refusal> {
        actor.must(Action::ManageUsers)?;
        let mut errors = FieldErrors::default();
        let username = new.username.trim().to_owned();
        if username.is_empty() {
            errors.add("username", "Enter a user name");
        } else if username.chars().count() > USERNAME_MAX_CHARS {
            errors.add("username", format!("The user name must be at most {USERNAME_MAX_CHARS} characters"));
        } else if username.chars().any(|c| c.is_control() || c.is_whitespace()) {
            errors.add("username", "The user name must not contain spaces or control characters");
        }
        check_password(&mut errors, "password", &new.password);
        let role = parse_role(&mut errors, new.role.trim());
        let Some(role) = role.filter(|_| errors.is_empty()) else { return Err(Refusal::Invalid(errors)) };
        let password_hash = hash(new.password.clone()).await?;
        let actor = actor.clone();
        let created = self
            .db
            .write(move |conn| {
                let admin = Admin::create(conn, &username, &password_hash, role.as_str())?;
                let changes = json!({
                    "username": {"old": null, "new": admin.username},
                    "role": {"old": null, "new": admin.role},
                    "password": {"old": null, "new": audit::REDACTED},
                });
                audit::record(conn, &actor, "user.create", &user_target(&admin), changes)?;
                Ok(admin)
            })
            .await;
        match created {
            Ok(admin) => {
                tracing::info!(user = ?admin.username, role = %admin.role, "user created");
                Ok(admin)
            }
            Err(e) if e.is_unique_violation() => {
                let mut errors = FieldErrors::default();
                errors.add("username", "This user name is taken");
                Err(Refusal::Invalid(errors))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A new role and/or password for account `id` (admins only); every
    /// session of the account ends. The last admin stays an admin.
    pub async fn update_user(
        &self,
        actor: &Actor,
        id: i64,
        role: &str,
        password: Option<&str>,
    ) -> Result<Admin, Refusal> {
        actor.must(Action::ManageUsers)?;
        let mut errors = FieldErrors::default();
        let role = if role.trim().is_empty() { None } else { parse_role(&mut errors, role.trim()) };
        let password = password.filter(|p| !p.is_empty());
        if let Some(p) = password {
            check_password(&mut errors, "password", p);
        }
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }
        let password_hash = match password {
            Some(p) => Some(hash(p.to_owned()).await?),
            None => None,
        };
        let actor = actor.clone();
        let outcome = self
            .db
            .write(move |conn| {
                let old = Admin::find(conn, id)?;
                let mut changes = serde_json::Map::new();
                if let Some(role) = role.filter(|r| r.as_str() != old.role) {
                    if old.role == Role::Admin.as_str() && Admin::count_with_role(conn, Role::Admin.as_str())? <= 1 {
                        return Ok(Err("role"));
                    }
                    Admin::set_role(conn, id, role.as_str())?;
                    changes.insert("role".into(), json!({"old": old.role, "new": role.as_str()}));
                }
                if let Some(hash) = &password_hash {
                    Admin::set_password_hash(conn, id, hash)?;
                    changes.insert("password".into(), json!({"old": audit::REDACTED, "new": audit::REDACTED}));
                }
                if !changes.is_empty() {
                    audit::record(conn, &actor, "user.update", &user_target(&old), changes.into())?;
                }
                Admin::find(conn, id).map(Ok)
            })
            .await
            .map_err(Refusal::or_missing(Missing::User(id)))?;
        let admin = outcome.map_err(|field| {
            let mut errors = FieldErrors::default();
            errors.add(field, "The last admin must stay an admin: make another user an admin first");
            Refusal::Invalid(errors)
        })?;
        tracing::info!(user = ?admin.username, role = %admin.role, "user changed; their sessions ended");
        Ok(admin)
    }

    /// Deletes account `id` and its sessions (admins only); neither one's own
    /// account nor the last admin.
    pub async fn delete_user(&self, actor: &Actor, id: i64) -> Result<Admin, Refusal> {
        actor.must(Action::ManageUsers)?;
        if matches!(actor, Actor::User { id: own, .. } if *own == id) {
            return Err(Refusal::Conflict("you cannot delete your own account; another admin can".into()));
        }
        let actor = actor.clone();
        let outcome = self
            .db
            .write(move |conn| {
                let old = Admin::find(conn, id)?;
                if old.role == Role::Admin.as_str() && Admin::count_with_role(conn, Role::Admin.as_str())? <= 1 {
                    return Ok(None);
                }
                let admin = Admin::delete(conn, id)?;
                let changes =
                    json!({"username": {"old": admin.username, "new": null}, "role": {"old": admin.role, "new": null}});
                audit::record(conn, &actor, "user.delete", &user_target(&admin), changes)?;
                Ok(Some(admin))
            })
            .await
            .map_err(Refusal::or_missing(Missing::User(id)))?;
        let admin = outcome.ok_or_else(|| Refusal::Conflict("the last admin cannot be deleted".into()))?;
        tracing::info!(user = ?admin.username, "user deleted");
        Ok(admin)
    }

    /// The signed-in user's own new password, given the current one; every
    /// session of the account ends (the caller starts a new one).
    pub async fn change_own_password(&self, actor: &Actor, current: &str, new: &str) -> Result<(), Refusal> {
        actor.must(Action::ChangeOwnPassword)?;
        let Actor::User { id, .. } = actor else {
            return Err(Refusal::Forbidden("only a signed-in user has a password".into()));
        };
        let id = *id;
        let mut errors = FieldErrors::default();
        check_password(&mut errors, "new_password", new);
        let admin = self.db.read(move |conn| Admin::find(conn, id)).await?;
        let (stored, given) = (admin.password_hash.clone(), current.to_owned());
        let verified = tokio::task::spawn_blocking(move || security::verify_password(&given, &stored))
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        if !verified {
            errors.add("current_password", "This is not your current password");
        }
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }
        let password_hash = hash(new.to_owned()).await?;
        let actor = actor.clone();
        self.db
            .write(move |conn| {
                Admin::set_password_hash(conn, id, &password_hash)?;
                let changes = json!({"password": {"old": audit::REDACTED, "new": audit::REDACTED}});
                audit::record(conn, &actor, "user.password", &user_target(&admin), changes)
            })
            .await?;
        tracing::info!(user = id, "password changed; the user's sessions ended");
        Ok(())
    }

    /// Checks a sign-in: the password check costs the same whether or not the
    /// user exists; failures are counted by user name and by client address,
    /// and past the limit the user name (or address) is locked out.
    pub async fn sign_in(&self, username: &str, password: String, client: Option<IpAddr>) -> Result<SignIn, Refusal> {
        let s = &self.settings;
        let lockout = TimeDelta::from_std(s.login_lockout).unwrap_or(TimeDelta::minutes(15));
        let user_key = format!("user:{username}");
        let mut keys = vec![user_key.clone()];
        if let Some(ip) = client {
            keys.push(format!("addr:{ip}"));
        }
        let limits = [i64::from(s.login_max_failures), i64::from(s.login_max_failures_per_address)];
        let since = now() - lockout;
        let lookup = (keys.clone(), username.to_owned());
        let (failures, admin) = self
            .db
            .read(move |conn| {
                let failures: Vec<Failures> =
                    lookup.0.iter().map(|k| signins::failures_since(conn, k, since)).collect::<Result<_, _>>()?;
                // No user name holds a NUL (PostgreSQL could not even look it up).
                let admin = if lookup.1.contains('\0') { None } else { Admin::find_by_username(conn, &lookup.1)? };
                Ok((failures, admin))
            })
            .await?;
        let locked_until = |failures: &[Failures]| {
            failures
                .iter()
                .zip(limits)
                .filter(|(f, limit)| f.count >= *limit)
                .filter_map(|(f, _)| f.latest)
                .max()
                .map(|latest| latest + lockout)
        };
        if let Some(until) = locked_until(&failures) {
            return Ok(SignIn::Locked { until });
        }
        let stored = admin.as_ref().map(|a| a.password_hash.clone());
        let verified =
            tokio::task::spawn_blocking(move || security::verify_password_or_dummy(&password, stored.as_deref()))
                .await
                .map_err(|e| Refusal::Internal(e.to_string()))?;
        match admin.filter(|_| verified) {
            Some(admin) => {
                self.db.write(move |conn| signins::clear(conn, &user_key)).await?;
                Ok(SignIn::Accepted(admin))
            }
            None => {
                self.db.write(move |conn| signins::record_failure(conn, &keys)).await?;
                let after: Vec<Failures> =
                    failures.iter().map(|f| Failures { count: f.count + 1, latest: Some(now()) }).collect();
                Ok(locked_until(&after).map_or(SignIn::Refused, |until| SignIn::Locked { until }))
            }
        }
    }
}
