//! The domain: validated values and the commands that are decided into events.

pub mod allocation;
pub mod alternatives;
pub mod keys;
pub mod names;
pub mod policy;
pub mod price;
pub mod usage;

pub use names::{Component, ContextId, Model, NameError, OperationId, Provider, SessionId, TaskType, UserId};
pub use usage::{RecordUsage, TokenCount, UsageInput, UsageValidationError};
