//! `#[stream(custom_behavior)]` with an impl that lacks
//! `#[turbo_model::active_model_behavior]` would run no hooks: it does not compile.

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
    #[sea_orm(table_name = "note")]
    #[stream(custom_behavior)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn main() {}
