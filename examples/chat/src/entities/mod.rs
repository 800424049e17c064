//! The chat's tables: rooms, the messages posted in them, and their authors.

pub mod author;
pub mod message;
pub mod room;
