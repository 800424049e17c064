use sea_orm::entity::prelude::*;
use turbo_model::ModelStream;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream)]
#[sea_orm(table_name = "message")]
#[stream(prefix = "messages", custom_behavior)]
#[stream(prefix = "msgs")]
#[stream(custom_behavior)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[stream(parent = crate::Entity, parent = crate::Entity)]
    pub room_id: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

fn main() {}
