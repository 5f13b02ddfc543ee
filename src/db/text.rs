//! The domain's enums as the database stores them: text, read back through
//! `FromStr`, so a value the code does not know is a load error (a logged
//! 500, a recorder retry), never a silent default.
//!
//! Tables loaded with `Queryable` read a `String` and convert it with the
//! enum's `TryFrom<String>` (`#[diesel(deserialize_as = String)]`); rows of
//! raw SQL (`QueryableByName`) read a [`Checked`], which parses in `FromSql`.

use std::str::FromStr;

use diesel::{
    backend::Backend,
    deserialize::{self, FromSql},
    sql_types::Text,
};

use crate::domain::{HandlerStatus, HandlerType, UnknownText};

/// A column's text, parsed.
#[derive(Debug)]
pub(super) struct Checked<T>(T);

impl<T, DB> FromSql<Text, DB> for Checked<T>
where
    DB: Backend,
    String: FromSql<Text, DB>,
    T: FromStr<Err = UnknownText>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Checked(String::from_sql(bytes)?.parse()?))
    }
}

/// A column's text read by hand (a tuple of a select), parsed the same way.
pub(super) fn parsed<T: FromStr<Err = UnknownText>>(text: &str) -> diesel::QueryResult<T> {
    text.parse().map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

macro_rules! checked {
    ($($ty:ty),+) => {
        $(impl From<Checked<$ty>> for $ty {
            fn from(checked: Checked<$ty>) -> Self {
                checked.0
            }
        })+
    };
}

checked!(HandlerStatus, HandlerType);

/// `text` with LIKE's wildcards escaped (by `\\`: use `.escape('\\')`).
pub(super) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The LIKE pattern of a text that contains `text`.
pub(super) fn contains_pattern(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_patterns_match_the_text_literally() {
        assert_eq!(contains_pattern("timeout"), "%timeout%");
        assert_eq!(contains_pattern("100%_x\\"), "%100\\%\\_x\\\\%");
    }
}
