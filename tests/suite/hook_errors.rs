//! With `HookErrors::Propagate`, a failing hook's error reaches the caller of the write.
//! The policy is the current `Turbo`'s: this test runs inside a scope of its own.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, DbErr, EntityTrait, Schema, Set};
use turbo_model::{Hook, HookErrors, Saved, Turbo};

mod task {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "task")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

struct RefusesEmptyTitles;

impl Hook for RefusesEmptyTitles {
    type Entity = task::Entity;

    fn on_save(&self, task: &task::Model, _: Saved) -> turbo_model::Result<()> {
        if task.title.is_empty() {
            return Err(turbo_model::Error::other("a task needs a title"));
        }
        Ok(())
    }
}

turbo_model::register!(RefusesEmptyTitles);

#[tokio::test]
async fn propagate_returns_the_hook_error_to_the_caller() {
    let turbo = Turbo::builder()
        .secret("hook error test secret, thirty-two bytes")
        .hook_errors(HookErrors::Propagate)
        .build()
        .expect("build");
    turbo.scope(propagated()).await;
}

async fn propagated() {
    let db = Database::connect("sqlite::memory:").await.expect("sqlite");
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(task::Entity))
        .await
        .expect("create table");

    let ok = task::ActiveModel {
        title: Set("write tests".into()),
        ..Default::default()
    }
    .insert(&db)
    .await;
    assert!(ok.is_ok(), "{ok:?}");

    let err = task::ActiveModel {
        title: Set(String::new()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect_err("the hook's error reaches the caller");
    assert_eq!(
        err,
        DbErr::Custom(
            "hook `suite::hook_errors::RefusesEmptyTitles` on entity `suite::hook_errors::task::Entity` failed: a task needs a title".into()
        )
    );
    // Outside a transaction the row was written before the hook ran.
    assert_eq!(task::Entity::find().all(&db).await.expect("rows").len(), 2);
}
