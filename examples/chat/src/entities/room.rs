//! A chat room. Its stream (`room:{id}`) is what the room page subscribes to.

use sea_orm::entity::prelude::*;
use serde::Serialize;
use turbo_model::ModelStream;

/// One room.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream, Serialize)]
#[sea_orm(table_name = "room")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Shown in the room list and the page title.
    pub name: String,
}

/// A room has many messages.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The room's messages.
    #[sea_orm(has_many = "super::message::Entity")]
    Message,
}

impl Related<super::message::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Message.def()
    }
}
