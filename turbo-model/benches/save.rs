//! What turbo-model adds to a save: a SeaORM `ActiveModel` insert on SQLite (in memory),
//! for an entity without turbo-model and for the same entity with the derive and a hook
//! that renders a component and sends it (nobody subscribed, the common case for most
//! rows). `cargo bench -p turbo-model --bench save`. Target: at most +10 %.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, Schema, Set};
use turbo_model::{Hook, Saved, Turbo, context};

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

fn setup(runtime: &tokio::runtime::Runtime) -> DatabaseConnection {
    Turbo::builder()
        .secret("save benchmark secret, 32 bytes or more")
        .template("message.html", COMPONENT)
        .install()
        .expect("install");
    runtime.block_on(async {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        let schema = Schema::new(db.get_database_backend());
        db.execute(&schema.create_table_from_entity(plain::Entity))
            .await
            .expect("table");
        db.execute(&schema.create_table_from_entity(live::Entity))
            .await
            .expect("table");
        db
    })
}

fn save(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = setup(&runtime);
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
    group.finish();
}

criterion_group!(benches, save);
criterion_main!(benches);
