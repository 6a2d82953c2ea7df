//! API keys: scopes, secrets and their hashes.
//!
//! A secret is `bgt_` and 64 hex digits (244 random bits from two UUIDv4s); only its SHA-256 is
//! stored, in the `ApiKeyCreated` event and the `api_keys` row, so neither the log nor the database
//! can be used to call the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do. Each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Every GET and the WebSocket.
    Read,
    /// What a component needs: usage, batches, checks, allocations and their release.
    Write,
    /// Policies, budgets, prices, replay, alert acknowledgement, keys.
    Admin,
}

impl KeyScope {
    pub const ALL: [KeyScope; 3] = [KeyScope::Read, KeyScope::Write, KeyScope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Write => "write",
            KeyScope::Admin => "admin",
        }
    }

    /// Whether a key of this scope may do what `needed` allows.
    pub fn allows(self, needed: KeyScope) -> bool {
        self >= needed
    }
}

impl FromStr for KeyScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(KeyScope::Read),
            "write" => Ok(KeyScope::Write),
            "admin" => Ok(KeyScope::Admin),
            other => Err(format!("`{other}` is not a scope; use read, write or admin")),
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every secret starts with, so that a leaked one is recognisable (and scannable).
pub const SECRET_PREFIX: &str = "bgt_";

/// A new secret.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The stored form of a secret.
pub fn secret_hash(secret: &str) -> String {
    crate::display::hex(&Sha256::digest(secret.as_bytes()))
}

/// The part of a secret shown in lists: the prefix and four characters.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(SECRET_PREFIX.len() + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_unique_and_stored_only_as_hashes() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("bgt_") && a.len() == 68 && a != b);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
        assert!(!secret_hash(&a).contains(&a[4..]));
        assert_eq!(display_prefix(&a).len(), 8);
    }

    #[test]
    fn scopes_include_the_ones_before() {
        assert!(KeyScope::Admin.allows(KeyScope::Write) && KeyScope::Write.allows(KeyScope::Read));
        assert!(!KeyScope::Read.allows(KeyScope::Write) && !KeyScope::Write.allows(KeyScope::Admin));
        assert_eq!("ADMIN".parse::<KeyScope>(), Ok(KeyScope::Admin));
    }
}
