//! An entity with its own `ActiveModelBehavior`: `#[stream(custom_behavior)]` on the
//! model and `#[turbo_model::active_model_behavior]` on the impl. The user's hooks run
//! first, `?` and `return` included, and turbo-model's hooks run on their result.

use std::sync::Mutex;

use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, EntityTrait, ModelTrait, Set};
use turbo_model::{Hook, Saved};

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(event: impl Into<String>) {
    EVENTS.lock().expect("not poisoned").push(event.into());
}

mod article {
    use sea_orm::Set;
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "article")]
    #[stream(custom_behavior)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    #[turbo_model::active_model_behavior]
    impl ActiveModelBehavior for ActiveModel {
        async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            if insert {
                self.title = Set(self.title.take().unwrap_or_default().trim().to_owned());
            }
            Ok(self)
        }

        // `_` for the connection and another name for the model: the macro must not
        // rely on the parameter names of the trait.
        async fn after_save<C>(mut saved: Model, _: &C, created: bool) -> Result<Model, DbErr>
        where
            C: ConnectionTrait,
        {
            crate::log(format!("user after_save {}", saved.title));
            if saved.title == "refused" {
                Err(DbErr::Custom("refused by the user's hook".into()))?;
            }
            if saved.title == "early" {
                saved.title = "returned early".into();
                return Ok(saved);
            }
            if created {
                saved.title = format!("{} (new)", saved.title);
            }
            Ok(saved)
        }

        async fn before_delete<C>(self, _: &C) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            crate::log("user before_delete");
            Ok(self)
        }

        async fn after_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
            let _ = db.get_database_backend();
            crate::log("user after_delete");
            Ok(self)
        }
    }
}

mod tag {
    use sea_orm::Set;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "tag")]
    #[stream(custom_behavior)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    // `#[async_trait]` written by the user, below: kept as is. None of the three glue
    // methods is written, so all three are added.
    #[turbo_model::active_model_behavior]
    #[async_trait::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        fn new() -> Self {
            Self {
                name: Set("untitled".into()),
                ..ActiveModelTrait::default()
            }
        }
    }
}

struct TagStream;

impl Hook for TagStream {
    type Entity = tag::Entity;

    fn on_save(&self, tag: &tag::Model, _: Saved) -> turbo_model::Result<()> {
        log(format!("hook on_save tag {}", tag.name));
        Ok(())
    }
}

turbo_model::register!(TagStream);

struct ArticleStream;

impl Hook for ArticleStream {
    type Entity = article::Entity;

    fn on_save(&self, article: &article::Model, saved: Saved) -> turbo_model::Result<()> {
        log(format!(
            "hook on_save {} created={}",
            article.title, saved.created
        ));
        Ok(())
    }

    fn on_delete(&self, article: &article::Model) -> turbo_model::Result<()> {
        log(format!("hook on_delete {}", article.title));
        Ok(())
    }
}

turbo_model::register!(ArticleStream);

fn take_events() -> Vec<String> {
    std::mem::take(&mut *EVENTS.lock().expect("not poisoned"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), sea_orm::DbErr> {
    let db = Database::connect("sqlite::memory:").await?;
    db.execute_unprepared(
        "CREATE TABLE article (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL)",
    )
    .await?;

    let saved = article::ActiveModel {
        title: Set("  hello ".into()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    assert_eq!(saved.title, "hello (new)");
    assert_eq!(saved.stream().name(), "article:1");
    assert_eq!(
        take_events(),
        [
            "user after_save hello",
            "hook on_save hello (new) created=true"
        ]
    );

    let early = article::ActiveModel {
        title: Set("early".into()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    assert_eq!(early.title, "returned early");
    assert_eq!(
        take_events(),
        [
            "user after_save early",
            "hook on_save returned early created=true"
        ]
    );

    let refused = article::ActiveModel {
        title: Set("refused".into()),
        ..Default::default()
    }
    .insert(&db)
    .await;
    assert_eq!(
        refused,
        Err(sea_orm::DbErr::Custom("refused by the user's hook".into()))
    );
    assert_eq!(
        take_events(),
        ["user after_save refused"],
        "no hook after the user's error"
    );

    // Only the key: the glue's `before_delete` loads the row, so the hook sees the data
    // as stored (the user's `after_save` changed only the value returned to the caller).
    article::ActiveModel {
        id: Set(1),
        ..Default::default()
    }
    .delete(&db)
    .await?;
    assert_eq!(
        take_events(),
        [
            "user before_delete",
            "user after_delete",
            "hook on_delete hello"
        ]
    );

    early.delete(&db).await?;
    assert_eq!(
        take_events(),
        [
            "user before_delete",
            "user after_delete",
            "hook on_delete returned early"
        ]
    );
    // The refused row was written: `after_save` runs after the INSERT, and without a
    // transaction nothing rolls it back.
    let left = article::Entity::find().all(&db).await?;
    assert_eq!(
        left.iter().map(|a| a.title.as_str()).collect::<Vec<_>>(),
        ["refused"]
    );

    db.execute_unprepared(
        "CREATE TABLE tag (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)",
    )
    .await?;
    let tag = <tag::ActiveModel as sea_orm::ActiveModelBehavior>::new()
        .insert(&db)
        .await?;
    assert_eq!(tag.stream().name(), "tag:1");
    assert_eq!(take_events(), ["hook on_save tag untitled"]);
    Ok(())
}
