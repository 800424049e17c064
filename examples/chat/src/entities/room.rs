//! A chat room. Its stream (`room:{id}`) is what the room page subscribes to.

use sea_orm::entity::prelude::*;
use serde::Serialize;
use turbo_model::ModelStream;

/// One room.
///
/// Creating a room refreshes the room list (it subscribes to the `room` stream), and
/// changing or deleting one refreshes the pages of that room (`room:{id}`): no hook to
/// write.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream, Serialize)]
#[sea_orm(table_name = "room")]
#[stream(broadcasts_refreshes)]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Shown in the room list and the page title.
    pub name: String,
    /// The one user name allowed in a private room; `None` for a public room.
    pub private_to: Option<String>,
}

impl Model {
    /// Whether `user` (the signed-in name, if any) may read and post in this room.
    pub fn admits(&self, user: Option<&str>) -> bool {
        match &self.private_to {
            None => true,
            Some(owner) => user == Some(owner.as_str()),
        }
    }
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
