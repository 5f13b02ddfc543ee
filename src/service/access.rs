//! Who may do what (DESIGN §8.3), decided here and only here: every page, form
//! and API call names the [`Action`] it performs, and [`Actor::must`] answers
//! yes or [`Refusal::Forbidden`].

use std::fmt;

use super::Refusal;

/// The role of a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Handlers' status, retries, replays and test events; no users, tokens or secrets.
    Operator,
    /// Reads pages, never a secret.
    Viewer,
}

/// The scope of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only `POST /api/v1/events`.
    Ingest,
    /// Only reads (GET).
    Read,
    /// Everything.
    Admin,
}

/// Something a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reads a page or a resource (secrets aside).
    Read,
    /// Sees a handler's signing secret.
    SeeSecrets,
    /// Posts an event.
    Ingest,
    /// Enables, disables, archives (later pauses) a handler.
    ChangeStatus,
    /// Retries a delivery, replays events, sends a test event.
    Retry,
    /// Creates, edits or deletes a handler.
    EditHandlers,
    /// Rotates a handler's signing secret.
    RotateSecrets,
    /// Lists, creates, changes and deletes user accounts.
    ManageUsers,
    /// Lists, creates and revokes API tokens.
    ManageTokens,
    /// Changes one's own password (a user, never a token).
    ChangeOwnPassword,
}

impl Action {
    /// What the action is, for a refusal: "change handlers".
    fn describe(self) -> &'static str {
        match self {
            Action::Read => "read this",
            Action::SeeSecrets => "see signing secrets",
            Action::Ingest => "post events",
            Action::ChangeStatus => "change a handler's status",
            Action::Retry => "retry deliveries",
            Action::EditHandlers => "create, edit or delete handlers",
            Action::RotateSecrets => "rotate signing secrets",
            Action::ManageUsers => "manage users",
            Action::ManageTokens => "manage API tokens",
            Action::ChangeOwnPassword => "change a password",
        }
    }
}

/// Who makes a request: a signed-in user or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User {
        id: i64,
        name: String,
        role: Role,
    },
    /// `id` is `None` for the bootstrap token of `PROVISIOND_API_TOKEN`.
    Token {
        id: Option<i64>,
        name: String,
        scope: Scope,
    },
}

impl Actor {
    /// The name the audit log records: the user name, or `token:<name>`.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::User { name, .. } => name.clone(),
            Actor::Token { name, .. } => format!("token:{name}"),
        }
    }

    /// Whether this actor may do `action` — the one table of rights.
    pub fn may(&self, action: Action) -> bool {
        use Action::*;
        match self {
            Actor::User { role: Role::Admin, .. } => action != Ingest,
            Actor::User { role: Role::Operator, .. } => {
                matches!(action, Read | ChangeStatus | Retry | ChangeOwnPassword)
            }
            Actor::User { role: Role::Viewer, .. } => matches!(action, Read | ChangeOwnPassword),
            Actor::Token { scope: Scope::Admin, .. } => action != ChangeOwnPassword,
            Actor::Token { scope: Scope::Read, .. } => action == Read,
            Actor::Token { scope: Scope::Ingest, .. } => action == Ingest,
        }
    }

    /// `Ok` when this actor may do `action`, else the refusal (403).
    pub fn must(&self, action: Action) -> Result<(), Refusal> {
        if self.may(action) { Ok(()) } else { Err(Refusal::Forbidden(self.forbidden(action))) }
    }

    fn forbidden(&self, action: Action) -> String {
        match self {
            Actor::User { role, .. } => format!("the {role} role may not {}", action.describe()),
            Actor::Token { scope, .. } => format!("a token of scope `{scope}` may not {}", action.describe()),
        }
    }
}

macro_rules! named {
    ($t:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$variant => $text),* }
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($text => Ok(<$t>::$variant),)*
                    _ => Err(format!(
                        "must be one of {}",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named!(Role { Admin = "admin", Operator = "operator", Viewer = "viewer" });
named!(Scope { Ingest = "ingest", Read = "read", Admin = "admin" });

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Actor {
        Actor::User { id: 1, name: "u".into(), role }
    }

    fn token(scope: Scope) -> Actor {
        Actor::Token { id: Some(1), name: "t".into(), scope }
    }

    #[test]
    fn the_table_of_rights() {
        use Action::*;
        let all = [
            Read,
            SeeSecrets,
            Ingest,
            ChangeStatus,
            Retry,
            EditHandlers,
            RotateSecrets,
            ManageUsers,
            ManageTokens,
            ChangeOwnPassword,
        ];
        let allowed = |actor: &Actor| all.iter().copied().filter(|a| actor.may(*a)).collect::<Vec<_>>();
        assert_eq!(allowed(&user(Role::Viewer)), [Read, ChangeOwnPassword]);
        assert_eq!(allowed(&user(Role::Operator)), [Read, ChangeStatus, Retry, ChangeOwnPassword]);
        assert_eq!(allowed(&user(Role::Admin)).len(), all.len() - 1);
        assert!(!user(Role::Admin).may(Ingest), "events come from the API");
        assert_eq!(allowed(&token(Scope::Ingest)), [Ingest]);
        assert_eq!(allowed(&token(Scope::Read)), [Read]);
        assert!(!token(Scope::Admin).may(ChangeOwnPassword));
        assert!(token(Scope::Admin).may(SeeSecrets));
    }

    #[test]
    fn refusals_say_who_may_not_do_what() {
        let refusal = user(Role::Viewer).must(Action::EditHandlers).unwrap_err();
        assert_eq!(refusal.to_string(), "forbidden: the viewer role may not create, edit or delete handlers");
        let refusal = token(Scope::Ingest).must(Action::Read).unwrap_err();
        assert_eq!(refusal.to_string(), "forbidden: a token of scope `ingest` may not read this");
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert_eq!("root".parse::<Role>(), Err("must be one of admin, operator, viewer".into()));
    }
}
