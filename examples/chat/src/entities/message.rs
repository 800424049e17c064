//! A message in a room. Saving one appends it to the room's page, live (see `hooks`).

use sea_orm::entity::prelude::*;
use serde::Serialize;
use turbo_model::ModelStream;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream, Serialize)]
#[sea_orm(table_name = "message")]
pub struct Model {
    /// Primary key; the page's element id is `message-{id}`.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The room the message was posted in; its stream is the message's parent stream.
    #[stream(parent = super::room::Entity)]
    pub room_id: i32,
    /// What was said.
    pub text: String,
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
}

impl Related<super::room::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Room.def()
    }
}
