//! Declarative broadcasts compile for every destination, with an optional parent, and
//! give rows their `dom_id`.
use turbo_model::StreamModel;

mod room {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "room")]
    #[stream(broadcasts, template = "rooms/room.html", target = "rooms")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "message")]
    #[stream(broadcasts_to = parent, template = "message.html", target = "messages")]
    #[stream(inserts_by = prepend)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = super::room::Entity)]
        pub room_id: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod alert {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "alert")]
    #[stream(broadcasts_to = "alerts", template = "alert.html", inserts_by = append)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    let message = message::Model { id: 12, room_id: None };
    assert_eq!(message.dom_id(), "message_12");
    assert_eq!(StreamModel::dom_id(&room::Model { id: 3 }), "room_3");
    assert_eq!(turbo_model::dom_id(&alert::Model { id: 1 }, Some("edit")), "edit_alert_1");
    let hooks: Vec<&str> = turbo_model::hooks::hooks_for::<message::Entity>().collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
}
