//! Identifiers. User ids are JWT subjects chosen by the issuer; chat and message ids are
//! UUIDv7 text; a device id is the client's own name for itself; a connection id is this
//! instance's own counter.
//!
//! The text ids are newtypes so that a user id cannot be passed where a chat id is meant. They
//! read as `&str` (`Deref`), compare with strings, and are written as plain JSON strings.

use std::{borrow::Borrow, fmt, ops::Deref};

use serde::{Deserialize, Serialize};

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                Self(id.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

text_id!(
    /// A user: the subject of their token (or, for an `e2e` session member, the member's id
    /// within its session).
    UserId
);
text_id!(
    /// A conversation (direct, group, note-to-self, session).
    ChatId
);
text_id!(
    /// A device of a user: the token's `deviceId`, the handshake's `auth.deviceId`, or a path
    /// that names it; `""` is the default device of connections that name none.
    DeviceId
);
text_id!(
    /// A stored message.
    MessageId
);

/// One client connection on this instance, of any transport.
pub type ConnId = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_compare_as_text_and_serialize_as_strings() {
        let user = UserId::from("alice");
        assert_eq!(user, "alice");
        assert_eq!(&*user, "alice");
        assert_eq!(serde_json::to_string(&user).ok().as_deref(), Some("\"alice\""));
        let back: UserId = serde_json::from_str("\"alice\"").expect("a JSON string");
        assert_eq!(back, user);
        let mut seen = std::collections::HashSet::new();
        seen.insert(user.clone());
        assert!(seen.contains("alice"));
    }
}
