//! What `#[derive(ModelStream)]` gives an entity: row streams and parent streams.

use sea_orm::EntityTrait;

use crate::broadcast::Stream;
use crate::name;

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

    /// The id of the element that shows the row, by Turbo's convention: `message_12`
    /// for the row whose stream is `message:12` (see [`dom_id`]). Declarative broadcasts
    /// replace and remove the element with this id.
    fn dom_id(&self) -> String {
        self.stream().name().dom_id()
    }
}

/// The id of the element that shows `row`, by Turbo's convention: its stream name with
/// every character other than an ASCII letter, digit, `-` or `_` turned into `_`
/// (`message_12` for `message:12`), after `prefix` and `_` when a prefix is given
/// (`edit_message_12`). Templates have the same as a filter:
/// `{{ message | dom_id }}`, `{{ message | dom_id(prefix="edit") }}`.
///
/// Keys that differ only in other characters (`a b` and `a.b`) give the same id; integer
/// and UUID keys never do.
///
/// ```
/// # mod message {
/// #   use sea_orm::entity::prelude::*;
/// #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
/// #   #[sea_orm(table_name = "message")]
/// #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub text: String }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # }
/// use turbo_model::dom_id;
///
/// let message = message::Model { id: 12, text: "hi".into() };
/// assert_eq!(dom_id(&message, None), "message_12");
/// assert_eq!(dom_id(&message, Some("edit")), "edit_message_12");
/// ```
pub fn dom_id(row: &impl StreamModel, prefix: Option<&str>) -> String {
    name::prefixed(row.dom_id(), prefix)
}
