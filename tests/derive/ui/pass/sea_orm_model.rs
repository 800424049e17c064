//! `#[sea_orm::model]` copies the derive onto the generated `ModelEx`; that copy
//! generates nothing, and the `Model` gets everything.

mod room {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "room")]
    #[stream(prefix = "rooms")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        #[sea_orm(has_many)]
        pub messages: HasMany<super::message::Entity>,
    }
}

mod message {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "message")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = super::room::Entity)]
        pub room_id: i32,
        pub text: String,
        #[sea_orm(belongs_to, from = "room_id", to = "id")]
        pub room: BelongsTo<super::room::Entity>,
    }
}

fn main() {
    let message = message::Model {
        id: 2,
        room_id: 1,
        text: "hi".into(),
    };
    assert_eq!(message.stream().name(), "message:2");
    assert_eq!(message.parent_stream().name(), "rooms:1");
    assert_eq!(room::Entity::stream_of(1).name(), "rooms:1");
}
