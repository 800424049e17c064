//! What `#[derive(ModelStream)]` gives an entity: row streams and parent streams.

use sea_orm::EntityTrait;

use crate::broadcast::Stream;

/// An entity whose rows have streams. Implemented by `#[derive(ModelStream)]`.
pub trait StreamEntity: EntityTrait {
    /// The first part of every row stream name of this entity: the table name, unless
    /// `#[stream(prefix = "...")]` says otherwise.
    fn stream_prefix() -> &'static str;
}

/// A row that has a stream. Implemented by `#[derive(ModelStream)]` on the `Model`.
pub trait StreamModel {
    /// The row's own stream: `table:primary-key`, e.g. `room:1`.
    fn stream(&self) -> Stream;
}
