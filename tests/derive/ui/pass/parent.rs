//! A message names its room as parent stream; both rows have their own streams.

mod room {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "room")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod message {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "message")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = super::room::Entity)]
        pub room_id: i32,
        pub text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    use turbo_model::{StreamEntity, StreamModel};

    let message = message::Model {
        id: 3,
        room_id: 1,
        text: "hi".into(),
    };
    assert_eq!(message.stream().name(), "message:3");
    assert_eq!(message.parent_stream().name(), "room:1");
    assert_eq!(message::Entity::stream_of(3).name(), "message:3");
    assert_eq!(StreamModel::stream(&message), message.stream());
    assert_eq!(message::Entity::stream_prefix(), "message");

    let room = room::Model {
        id: 1,
        name: "lobby".into(),
    };
    assert_eq!(room.stream(), message.parent_stream());
    assert_eq!(room::Entity::stream_of(1), room.stream());
}
