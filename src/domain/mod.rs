//! The product's pure core: what a handler may be, the delivery lifecycle and
//! its one transition, the retry schedule and the signature. No I/O, no
//! storage: `db/` stores these types as text, the dispatcher runs them.

use std::fmt;

/// Text that names none of a type's values (a column the code does not
/// know: a load error, never a silent default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownText {
    pub kind: &'static str,
    pub text: String,
}

impl fmt::Display for UnknownText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`", self.kind, self.text)
    }
}

impl std::error::Error for UnknownText {}

/// An enum stored as text: `as_str`, `ALL`, `FromStr` (an [`UnknownText`]
/// for anything else), `Display`, and `TryFrom<String>` (what the database
/// layer loads it through).
macro_rules! text_enum {
    ($ty:ident $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::domain::UnknownText;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err($crate::domain::UnknownText { kind: $kind, text: s.to_owned() }),
                }
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::domain::UnknownText;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod alert;
pub mod delivery;
pub mod duration;
pub mod envelope;
pub mod handler;
pub mod job;
#[cfg(test)]
mod properties;
pub mod rate;
pub mod retry;
pub mod signing;
pub mod target;

pub use delivery::{AfterAttempt, DeliveryState, Outcome, after_attempt};
pub use handler::{FieldErrors, HandlerForm, HandlerStatus, HandlerType, ValidHandler};
pub use rate::RateLimit;
pub use retry::RetrySchedule;
