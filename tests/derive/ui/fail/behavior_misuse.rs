use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
#[sea_orm(table_name = "message")]
#[stream(custom_behavior)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

// `async_trait` ran first: the hooks are no longer `async fn`s.
#[async_trait::async_trait]
#[turbo_model::active_model_behavior]
impl ActiveModelBehavior for ActiveModel {
    async fn after_save<C>(model: Model, _db: &C, _insert: bool) -> Result<Model, DbErr>
    where
        C: ConnectionTrait,
    {
        Ok(model)
    }
}

#[turbo_model::active_model_behavior]
impl Clone for Relation2 {
    fn clone(&self) -> Self {
        Relation2
    }
}

pub struct Relation2;

#[turbo_model::active_model_behavior]
impl Relation2 {}

#[turbo_model::active_model_behavior(strict)]
pub struct NotAnImpl;

#[turbo_model::active_model_behavior]
pub fn not_an_impl() {}

fn main() {}
