//! What turbo-model adds to a save: a SeaORM `ActiveModel` insert on SQLite (a file in
//! the temporary folder, WAL mode, `synchronous = NORMAL`, a pool of four connections:
//! a web app's set-up, where a background hook's query does not wait for the
//! request's connection),
//! for an entity without turbo-model, for the same entity with the derive and a hook
//! that renders a component and sends it (nobody subscribed, the common case for most
//! rows), and with an async hook that first reads the row back from the database. The
//! async hook's cost to the request is the insert alone; "settled" waits for the hook
//! too, which is what the work costs in all. `cargo bench -p turbo-model --bench save`.
//! Targets: the hook at most +10 %; the async hook no more than the hook.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
    Schema, Set,
};
use turbo_model::{AsyncHook, Hook, HookContext, Saved, Turbo, context};

mod plain {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "plain_message")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) room_id: i32,
        pub(crate) text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod live {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "live_message")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) room_id: i32,
        pub(crate) text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

mod later {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "later_message")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) room_id: i32,
        pub(crate) text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

/// The same broadcast as [`LiveMessages`], after a query.
struct LaterMessages;

impl AsyncHook for LaterMessages {
    type Entity = later::Entity;

    async fn on_save(
        &self,
        cx: &HookContext,
        message: &later::Model,
        saved: Saved,
    ) -> turbo_model::Result<()> {
        if saved.created {
            let message = later::Entity::find_by_id(message.id)
                .one(cx.db()?)
                .await?
                .ok_or_else(|| turbo_model::Error::other("the row is gone"))?;
            turbo_model::stream(format!("room:{}", message.room_id))?
                .append("message.html", context! { message })
                .target("messages")
                .send()?;
        }
        Ok(())
    }
}

turbo_model::register_async!(LaterMessages);

struct LiveMessages;

impl Hook for LiveMessages {
    type Entity = live::Entity;

    fn on_save(&self, message: &live::Model, saved: Saved) -> turbo_model::Result<()> {
        if saved.created {
            turbo_model::stream(format!("room:{}", message.room_id))?
                .append("message.html", context! { message })
                .target("messages")
                .send()?;
        }
        Ok(())
    }
}

turbo_model::register!(LiveMessages);

const COMPONENT: &str =
    r#"<li id="message-{{ message.id }}"><span class="text">{{ message.text }}</span></li>"#;

/// The benchmark's database, in the temporary folder.
fn database_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("turbo-model-save-{}.db", std::process::id()))
}

fn remove_database() {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database_file().display()));
    }
}

fn setup(runtime: &tokio::runtime::Runtime) -> (DatabaseConnection, Turbo) {
    let file = database_file();
    remove_database();
    let db = runtime.block_on(async {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        let mut options = ConnectOptions::new(format!("sqlite://{}?mode=rwc", file.display()));
        options.sqlx_logging(false).max_connections(4);
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        });
        let db = Database::connect(options).await.expect("sqlite");
        let schema = Schema::new(db.get_database_backend());
        db.execute(&schema.create_table_from_entity(plain::Entity))
            .await
            .expect("table");
        db.execute(&schema.create_table_from_entity(live::Entity))
            .await
            .expect("table");
        db.execute(&schema.create_table_from_entity(later::Entity))
            .await
            .expect("table");
        db
    });
    let turbo = Turbo::builder()
        .secret("save benchmark secret, 32 bytes or more")
        .template("message.html", COMPONENT)
        .database(db.clone())
        .install()
        .expect("install");
    (db, turbo)
}

fn save(c: &mut Criterion) {
    // Two workers, as a server has: an async hook runs beside the next request.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (db, turbo) = setup(&runtime);
    let mut group = c.benchmark_group("insert");
    group.bench_function("without turbo-model", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let row = plain::ActiveModel {
                    room_id: Set(1),
                    text: Set("Hello everyone, this is a chat message.".into()),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .expect("insert");
                black_box(row)
            })
        });
    });
    group.bench_function("with a hook, no subscribers", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let row = live::ActiveModel {
                    room_id: Set(1),
                    text: Set("Hello everyone, this is a chat message.".into()),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .expect("insert");
                black_box(row)
            })
        });
    });
    let later_row = || later::ActiveModel {
        room_id: Set(1),
        text: Set("Hello everyone, this is a chat message.".into()),
        ..Default::default()
    };
    group.bench_function("with an async hook (the request)", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(later_row().insert(&db).await.expect("insert")) })
        });
    });
    runtime.block_on(turbo.settled());
    group.bench_function("with an async hook, settled", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let row = later_row().insert(&db).await.expect("insert");
                turbo.settled().await;
                black_box(row)
            })
        });
    });
    group.finish();
    runtime.block_on(turbo.settled());
    remove_database();
    let metrics = turbo.metrics();
    assert_eq!(
        metrics.broadcasts, metrics.renders,
        "every async hook ran and sent (none was refused by a full queue)"
    );
}

criterion_group!(benches, save);
criterion_main!(benches);
