//! Declarative broadcasts written wrong: each mistake is reported at its place.

mod no_template {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "a")]
    #[stream(broadcasts)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod no_parent_field {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "b")]
    #[stream(broadcasts_to = parent, template = "b.html")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub room_id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod both_and_bad_values {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "c")]
    #[stream(broadcasts_to = "lobby", broadcasts, template = "c.html")]
    #[stream(inserts_by = sideways, target = "")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod extras_alone {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "d")]
    #[stream(template = "d.html", target = "ds")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(broadcasts_to = parent)]
        pub other: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod bad_destination {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "e")]
    #[stream(broadcasts_to = room, template = 3)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {}
