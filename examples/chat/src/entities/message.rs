//! A message in a room. Saving one appends it to the room's page, live, with its
//! author's name; editing one replaces it, deleting one removes it (see `hooks`).

use sea_orm::entity::prelude::*;
use serde::Serialize;
use turbo_model::ModelStream;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream, Serialize)]
#[sea_orm(table_name = "message")]
pub struct Model {
    /// Primary key; the page's element id is the message's `dom_id`, `message_{id}`.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The room the message was posted in; its stream is the message's parent stream.
    #[stream(parent = super::room::Entity)]
    pub room_id: i32,
    /// What was said.
    pub text: String,
    /// Who said it; `None` when nobody was signed in.
    pub author_id: Option<i32>,
}

/// A message belongs to a room.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The room the message was posted in.
    #[sea_orm(
        belongs_to = "super::room::Entity",
        from = "Column::RoomId",
        to = "super::room::Column::Id",
        on_delete = "Cascade"
    )]
    Room,
    /// Who wrote the message.
    #[sea_orm(
        belongs_to = "super::author::Entity",
        from = "Column::AuthorId",
        to = "super::author::Column::Id",
        on_delete = "SetNull"
    )]
    Author,
}

impl Related<super::room::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Room.def()
    }
}

impl Related<super::author::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Author.def()
    }
}
