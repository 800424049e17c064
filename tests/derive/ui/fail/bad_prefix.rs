use sea_orm::entity::prelude::*;
use turbo_model::ModelStream;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream)]
#[sea_orm(table_name = "a")]
#[stream(prefix = rooms)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

mod b {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "b")]
    #[stream(prefix = "")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod c {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "c")]
    #[stream(prefix)]
    #[stream(custom_behavior = true)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {}
