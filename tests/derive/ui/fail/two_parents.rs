use sea_orm::entity::prelude::*;
use turbo_model::ModelStream;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream)]
#[sea_orm(table_name = "message")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[stream(parent = crate::Entity)]
    pub room_id: i32,
    #[stream(parent = crate::Entity)]
    pub author_id: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

fn main() {
    // The first parent is kept, so the method exists.
    let _ = Model {
        id: 1,
        room_id: 2,
        author_id: 3,
    }
    .parent_stream();
}
