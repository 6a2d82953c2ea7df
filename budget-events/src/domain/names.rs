//! Validated names: provider, model, component, task type, context, session, user and operation ids.
//!
//! A raw string from a request never reaches an event: it becomes one of these first, so that every
//! name in the log is trimmed, non-empty, bounded and free of control characters.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} characters long; the limit is {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} contains a control character; use printable text")]
    ControlCharacter { field: &'static str },
}

fn validate(field: &'static str, raw: &str, max: usize) -> Result<String, NameError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(NameError::Empty { field });
    }
    let len = value.chars().count();
    if len > max {
        return Err(NameError::TooLong { field, len, max });
    }
    if value.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter { field });
    }
    Ok(value.to_string())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const FIELD: &'static str = $field;
            pub const MAX_LEN: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, NameError> {
                validate($field, raw, $max).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(raw: String) -> Result<Self, NameError> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An LLM provider: `openai`, `anthropic`, `ollama`…
    Provider, "provider", 64
);
name_type!(
    /// A model as the provider names it: `gpt-4o`, `claude-sonnet-4-5`…
    Model, "model", 128
);
name_type!(
    /// The calling component: `codex`, `rhetor`…
    Component, "component", 128
);
name_type!(
    /// What the call was for: `coding`, `chat`… (`default` when not given).
    TaskType, "task_type", 64
);
name_type!(
    /// The task or context the spending belongs to.
    ContextId, "context_id", 256
);
name_type!(
    /// The session the spending belongs to.
    SessionId, "session_id", 256
);
name_type!(
    /// The end user a call was made for (`alice`): a scope limits can be set on.
    UserId, "user_id", 256
);
name_type!(
    /// The caller's own id for the operation a call was part of.
    OperationId, "operation_id", 256
);

impl TaskType {
    pub fn default_type() -> Self {
        TaskType("default".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Provider::parse("  openai ").unwrap().as_str(), "openai");
        assert_eq!(Provider::parse("  "), Err(NameError::Empty { field: "provider" }));
        let long = "x".repeat(65);
        assert!(matches!(Provider::parse(&long), Err(NameError::TooLong { len: 65, .. })));
        assert!(matches!(Model::parse("gpt\u{0}4"), Err(NameError::ControlCharacter { .. })));
    }
}
