use sea_orm::entity::prelude::*;
use turbo_model::ModelStream;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream)]
#[sea_orm(table_name = "message")]
#[stream(prefx = "messages")]
#[stream(parent = super::room::Entity)]
pub struct Model {
    #[sea_orm(primary_key)]
    #[stream(prefix = "id")]
    pub id: i32,
    #[stream(parnet = crate::Entity)]
    pub room_id: i32,
    #[stream]
    pub text: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

fn main() {}
