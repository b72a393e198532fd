//! Global object ids for `node(id:)`: the type name and the record id, base64url-encoded, so a
//! client can refetch any object without knowing its type.

use async_graphql::ID;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Error, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Partner,
    Actor,
    Action,
    Outcome,
    Partnership,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Partner => "Partner",
            Kind::Actor => "Actor",
            Kind::Action => "Action",
            Kind::Outcome => "Outcome",
            Kind::Partnership => "Partnership",
        }
    }

    fn from_name(s: &str) -> Option<Kind> {
        [
            Kind::Partner,
            Kind::Actor,
            Kind::Action,
            Kind::Outcome,
            Kind::Partnership,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

pub fn encode(kind: Kind, id: &str) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{}:{id}", kind.name())))
}

/// Decodes any global id; `None` for text that is not one.
pub fn decode(id: &str) -> Option<(Kind, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(id.as_bytes()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (kind, local) = text.split_once(':')?;
    // No record has such an id (`domain::write`), and the database must not see it.
    if local.contains('\0') || local.len() > 200 {
        return None;
    }
    Some((Kind::from_name(kind)?, local.to_owned()))
}

/// Decodes an id that must be of `kind`, for arguments such as `action(id:)`.
pub fn decode_as(kind: Kind, id: &ID, field: &str) -> Result<String, Error> {
    match decode(id) {
        Some((k, local)) if k == kind => Ok(local),
        _ => Err(Error::Invalid(vec![FieldError::new(
            field,
            format!("not a {} id", kind.name()),
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_kind() {
        let id = encode(Kind::Action, "caravan-2020");
        assert_eq!(decode(&id), Some((Kind::Action, "caravan-2020".into())));
        assert!(decode_as(Kind::Actor, &id, "id").is_err());
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("Planet:x")), None);
        assert_eq!(decode(&encode(Kind::Action, "a\0b")), None);
        assert_eq!(decode(&encode(Kind::Action, &"x".repeat(201))), None);
    }
}
