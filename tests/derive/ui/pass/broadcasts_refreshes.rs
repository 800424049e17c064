//! `#[stream(broadcasts_refreshes)]` registers a hook for the entity, with or without a
//! parent (an optional one too), and no hook needs to be written.

mod room {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "room")]
    #[stream(broadcasts_refreshes)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "note")]
    #[stream(broadcasts_refreshes)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = super::room::Entity)]
        pub room_id: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    let room_hooks: Vec<_> = turbo_model::hooks::hooks_for::<room::Entity>().collect();
    assert_eq!(room_hooks.len(), 1);
    assert!(room_hooks[0].ends_with("::room::BroadcastsRefreshes"), "{room_hooks:?}");
    let note_hooks: Vec<_> = turbo_model::hooks::hooks_for::<note::Entity>().collect();
    assert_eq!(note_hooks.len(), 1);
    assert!(note_hooks[0].ends_with("::note::BroadcastsRefreshes"), "{note_hooks:?}");
}
