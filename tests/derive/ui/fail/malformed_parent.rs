use sea_orm::entity::prelude::*;
use turbo_model::ModelStream;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream)]
#[sea_orm(table_name = "a")]
pub struct Model {
    #[sea_orm(primary_key)]
    #[stream(parent = "room")]
    pub id: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

mod b {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "b")]
    pub struct Model {
        #[sea_orm(primary_key)]
        #[stream(parent)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod c {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "c")]
    pub struct Model {
        #[sea_orm(primary_key)]
        #[stream(parent = 1 + 2)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    // Stubs: `parent_stream` still exists, so the only errors are the attributes.
    let _ = Model { id: 1 }.parent_stream();
    let _ = b::Model { id: 1 }.parent_stream();
}
