//! Someone who posts messages: a user name, chosen at sign-in (see `session`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// One author. Messages point at their author; the name is shown next to each message,
/// read when the message is rendered (see `hooks`), not copied into it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "author")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The user name, unique.
    #[sea_orm(unique)]
    pub name: String,
}

/// An author has written messages.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The author's messages.
    #[sea_orm(has_many = "super::message::Entity")]
    Message,
}

impl Related<super::message::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Message.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// The author named `name`, created on first use.
///
/// # Errors
///
/// The database error when neither the insert nor the lookup works.
pub async fn named<C: ConnectionTrait>(db: &C, name: &str) -> Result<Model, DbErr> {
    if let Some(author) = Entity::find().filter(Column::Name.eq(name)).one(db).await? {
        return Ok(author);
    }
    let inserted = ActiveModel {
        name: sea_orm::Set(name.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await;
    match inserted {
        Ok(author) => Ok(author),
        // Another request created the same name in between: theirs is ours.
        Err(error) => Entity::find()
            .filter(Column::Name.eq(name))
            .one(db)
            .await?
            .ok_or(error),
    }
}
