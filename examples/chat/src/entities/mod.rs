//! The chat's two tables: rooms, and the messages posted in them.

pub mod message;
pub mod room;
