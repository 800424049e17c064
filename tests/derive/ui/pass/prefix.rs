//! `#[stream(prefix = "...")]` replaces the table name in stream names, parent's included.

mod room {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "chat_room")]
    #[stream(prefix = "rooms")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "chat_message")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = super::room::Entity)]
        pub room_id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    use turbo_model::StreamEntity;

    assert_eq!(room::Entity::stream_prefix(), "rooms");
    assert_eq!(room::Model { id: 5 }.stream().name(), "rooms:5");
    let message = message::Model { id: 9, room_id: 5 };
    assert_eq!(message.stream().name(), "chat_message:9");
    assert_eq!(message.parent_stream().name(), "rooms:5");
}
