//! Real-time updates over WebSocket: a hub that tails the log (so every replica's writes reach every
//! replica's clients) and one task per connection.

pub mod hub;
pub mod message;
pub mod session;
