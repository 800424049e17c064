//! After-commit delivery, on SQLite and on the local PostgreSQL: broadcasts made by hooks
//! inside a transaction opened through `turbo_model::Db` are published after COMMIT, in
//! order, exactly once, and never for a transaction that rolls back, fails, panics or is
//! dropped. Also: suppression, and what happens in a plain SeaORM transaction.

use std::sync::OnceLock;

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DbErr, EntityTrait, Schema, Set, TransactionError,
    TransactionTrait,
};
use turbo_model::testing::{Broadcasts, capture};
use turbo_model::{Action, Db, Hook, Saved, Turbo, context};
use turbo_model_tests::db::PgDatabase;

mod item {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "item")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) list: String,
        pub(crate) name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

/// Appends each saved item to its list's stream.
struct ItemStream;

impl Hook for ItemStream {
    type Entity = item::Entity;

    fn on_save(&self, item: &item::Model, _: Saved) -> turbo_model::Result<()> {
        turbo_model::stream(format!("list:{}", item.list))
            .expect("a valid stream name")
            .append("item.html", context! { item })
            .target("items")
            .send()
    }
}

turbo_model::register!(ItemStream);

fn turbo() -> &'static Turbo {
    static TURBO: OnceLock<Turbo> = OnceLock::new();
    TURBO.get_or_init(|| {
        Turbo::builder()
            .secret("transactions test secret, 32 bytes or more")
            .template("item.html", "<li>{{ item.name }}</li>")
            .build()
            .unwrap_or_else(|e| panic!("build: {e}"))
    })
}

fn new_item(list: &str, name: &str) -> item::ActiveModel {
    item::ActiveModel {
        list: Set(list.to_owned()),
        name: Set(name.to_owned()),
        ..Default::default()
    }
}

/// The item names appended to `list`, in publish order.
fn names_on(broadcasts: &Broadcasts, list: &str) -> Vec<String> {
    broadcasts
        .on(&format!("list:{list}"))
        .iter()
        .map(|r| {
            assert_eq!(r.action, Action::Append);
            r.content()
                .unwrap_or_default()
                .trim_start_matches("<li>")
                .trim_end_matches("</li>")
                .to_owned()
        })
        .collect()
}

async fn the_whole_contract(db: Db, label: &str) {
    turbo();
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(item::Entity))
        .await
        .expect("create table");
    let list = |case: &str| format!("{label}-{case}");

    // Outside a transaction: at once.
    let ((), sent) = capture(async {
        new_item(&list("plain"), "a")
            .insert(&db)
            .await
            .expect("insert");
    })
    .await;
    assert_eq!(names_on(&sent, &list("plain")), ["a"]);

    // begin / commit: held until COMMIT (nothing published while open), then in order,
    // once.
    let ((), sent) = capture(async {
        let txn = db.begin().await.expect("begin");
        let ((), while_open) = capture(async {
            new_item(&list("commit"), "1")
                .insert(&txn)
                .await
                .expect("insert");
            new_item(&list("commit"), "2")
                .insert(&txn)
                .await
                .expect("insert");
        })
        .await;
        while_open.assert_count(0);
        assert_eq!(txn.held(), 2, "held, not sent");
        txn.commit().await.expect("commit");
    })
    .await;
    assert_eq!(names_on(&sent, &list("commit")), ["1", "2"]);

    // rollback: never.
    let ((), sent) = capture(async {
        let txn = db.begin().await.expect("begin");
        new_item(&list("rollback"), "gone")
            .insert(&txn)
            .await
            .expect("insert");
        txn.rollback().await.expect("rollback");
    })
    .await;
    sent.assert_count(0);

    // The closure form: Ok commits and publishes, Err rolls back and drops.
    let ((), sent) = capture(async {
        db.transaction::<_, (), DbErr>(|txn| {
            let list = list("closure-ok");
            Box::pin(async move {
                new_item(&list, "kept").insert(txn).await?;
                Ok(())
            })
        })
        .await
        .expect("commits");
        let failed = db
            .transaction::<_, (), DbErr>(|txn| {
                let list = list("closure-err");
                Box::pin(async move {
                    new_item(&list, "dropped").insert(txn).await?;
                    Err(DbErr::Custom("the handler failed".into()))
                })
            })
            .await;
        assert!(matches!(failed, Err(TransactionError::Transaction(_))));
    })
    .await;
    assert_eq!(names_on(&sent, &list("closure-ok")), ["kept"]);
    sent.assert_none_on(&format!("list:{}", list("closure-err")));

    // Nested: an inner rollback drops only the inner broadcasts; an inner commit hands
    // them to the outer transaction, which publishes them on its own COMMIT.
    let ((), sent) = capture(async {
        let outer = db.begin().await.expect("begin");
        new_item(&list("nested"), "outer-1")
            .insert(&outer)
            .await
            .expect("insert");
        let inner = outer.begin().await.expect("savepoint");
        new_item(&list("nested"), "inner-rolled-back")
            .insert(&inner)
            .await
            .expect("insert");
        inner.rollback().await.expect("rollback to savepoint");
        let inner = outer.begin().await.expect("savepoint");
        new_item(&list("nested"), "inner-kept")
            .insert(&inner)
            .await
            .expect("insert");
        inner.commit().await.expect("release savepoint");
        assert_eq!(outer.held(), 2);
        new_item(&list("nested"), "outer-2")
            .insert(&outer)
            .await
            .expect("insert");
        outer.commit().await.expect("commit");
    })
    .await;
    assert_eq!(
        names_on(&sent, &list("nested")),
        ["outer-1", "inner-kept", "outer-2"]
    );

    // An inner commit inside an outer rollback: nothing.
    let ((), sent) = capture(async {
        let outer = db.begin().await.expect("begin");
        let inner = outer.begin().await.expect("savepoint");
        new_item(&list("outer-rollback"), "x")
            .insert(&inner)
            .await
            .expect("insert");
        inner.commit().await.expect("release");
        outer.rollback().await.expect("rollback");
    })
    .await;
    sent.assert_count(0);

    // Dropped without commit: nothing.
    let ((), sent) = capture(async {
        let txn = db.begin().await.expect("begin");
        new_item(&list("dropped"), "x")
            .insert(&txn)
            .await
            .expect("insert");
        drop(txn);
    })
    .await;
    sent.assert_count(0);

    // A panic inside the closure: the transaction rolls back by drop; nothing is sent.
    // The panic happens in another task, so a subscriber on the hub watches.
    let mut watcher = turbo().hub().connect();
    let panic_stream =
        turbo_model::StreamName::new(format!("list:{}", list("panic"))).expect("stream name");
    watcher.subscribe(&panic_stream, None);
    let panicking_db = db.clone();
    let panicking_list = list("panic");
    let task = tokio::spawn(turbo().scope(async move {
        let _ = panicking_db
            .transaction::<_, (), DbErr>(|txn| {
                Box::pin(async move {
                    new_item(&panicking_list, "x").insert(txn).await?;
                    panic!("the handler panicked");
                })
            })
            .await;
    }));
    assert!(task.await.expect_err("the task panicked").is_panic());
    // A broadcast of the same stream made afterwards arrives first: nothing came before.
    turbo_model::stream(panic_stream.as_str())
        .expect("a valid stream name")
        .remove()
        .target("marker")
        .send()
        .expect("sent");
    let first = watcher.try_next_frame().expect("the marker");
    assert_eq!(
        first.html(),
        r#"<turbo-stream action="remove" target="marker"></turbo-stream>"#
    );
    drop(watcher);

    // What was committed is in the database; what was not, is not.
    let names: Vec<String> = item::Entity::find()
        .all(&db)
        .await
        .expect("rows")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(
        names,
        ["a", "1", "2", "kept", "outer-1", "inner-kept", "outer-2"]
    );

    // Suppressed: saved, not broadcast; and the suppression stays in its task.
    let ((), sent) = capture(async {
        turbo_model::suppress(async {
            new_item(&list("suppressed"), "quiet")
                .insert(&db)
                .await
                .expect("insert");
            assert!(turbo_model::is_suppressed());
        })
        .await;
        assert!(!turbo_model::is_suppressed());
        let other = tokio::spawn(async { turbo_model::is_suppressed() });
        assert!(!other.await.expect("task"));
        new_item(&list("suppressed"), "loud")
            .insert(&db)
            .await
            .expect("insert");
    })
    .await;
    assert_eq!(names_on(&sent, &list("suppressed")), ["loud"]);
}

#[tokio::test]
async fn after_commit_on_sqlite() {
    turbo()
        .scope(async {
            let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
            the_whole_contract(Db::new(conn), "sqlite").await;
        })
        .await;
}

#[tokio::test]
async fn after_commit_on_postgres() {
    turbo()
        .scope(async {
            let pg = PgDatabase::create("txn")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            the_whole_contract(Db::new(pg.db.clone()), "postgres").await;
            pg.drop_now().await.unwrap_or_else(|e| panic!("{e}"));
        })
        .await;
}

#[tokio::test]
async fn a_plain_seaorm_transaction_still_broadcasts_but_before_commit() {
    turbo()
        .scope(async {
            turbo();
            let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
            let schema = Schema::new(conn.get_database_backend());
            conn.execute(&schema.create_table_from_entity(item::Entity))
                .await
                .expect("create table");
            let ((), sent) = capture(async {
                let txn = conn.begin().await.expect("begin");
                new_item("plain-txn", "early")
                    .insert(&txn)
                    .await
                    .expect("insert");
                txn.rollback().await.expect("rollback");
            })
            .await;
            // Documented: without turbo_model::Db the hook cannot know about the rollback.
            assert_eq!(names_on(&sent, "plain-txn"), ["early"]);
        })
        .await;
}

#[tokio::test]
async fn a_caller_that_stops_waiting_for_commit_cannot_lose_the_broadcasts() {
    turbo()
        .scope(async {
            let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
            let schema = Schema::new(conn.get_database_backend());
            conn.execute(&schema.create_table_from_entity(item::Entity))
                .await
                .expect("create table");
            let db = Db::new(conn);
            let stream = turbo_model::StreamName::new("list:cancelled").expect("name");
            let mut watcher = turbo().hub().connect();
            watcher.subscribe(&stream, None);

            let txn = db.begin().await.expect("begin");
            new_item("cancelled", "kept").insert(&txn).await.expect("insert");
            {
                // The request is cancelled while the COMMIT is under way: its future is
                // polled once, then dropped.
                let commit = txn.commit();
                tokio::pin!(commit);
                let first_poll = tokio::select! {
                    biased;
                    _ = &mut commit => "finished",
                    () = std::future::ready(()) => "pending",
                };
                assert_eq!(first_poll, "pending");
            }
            // The row is committed, and so is its broadcast.
            let frame = tokio::time::timeout(std::time::Duration::from_secs(5), watcher.next_frame())
                .await
                .expect("the broadcast comes")
                .expect("a frame");
            assert_eq!(
                frame.html(),
                r#"<turbo-stream action="append" target="items"><template><li>kept</li></template></turbo-stream>"#
            );
            assert_eq!(item::Entity::find().all(&*db).await.expect("rows").len(), 1);
        })
        .await;
}

#[tokio::test]
async fn every_broadcast_sent_inside_a_transaction_waits_for_its_commit() {
    turbo()
        .scope(async {
            let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
            let schema = Schema::new(conn.get_database_backend());
            conn.execute(&schema.create_table_from_entity(item::Entity))
                .await
                .expect("create table");
            let db = Db::new(conn);
            let news = || {
                turbo_model::stream("list:news")
                    .expect("name")
                    .action(
                        Action::Append,
                        Some(turbo_model::Content::html("<li>news</li>")),
                    )
                    .target("items")
            };

            // A handler's own broadcast, and hooks run by hand after a bulk insert.
            let ((), sent) = capture(async {
                let txn = db.begin().await.expect("begin");
                news().send().expect("held");
                let rows =
                    item::Entity::insert_many([new_item("bulk", "one"), new_item("bulk", "two")])
                        .exec_with_returning(&txn)
                        .await
                        .expect("insert_many");
                for row in &rows {
                    turbo_model::saved(row, Saved::CREATED).expect("hooks");
                }
                assert_eq!(txn.held(), 3, "nothing went out before the commit");
                txn.commit().await.expect("commit");
            })
            .await;
            assert_eq!(sent.on("list:news").len(), 1);
            assert_eq!(names_on(&sent, "bulk"), ["one", "two"]);

            // Rolled back: nothing.
            let ((), sent) = capture(async {
                let txn = db.begin().await.expect("begin");
                news().send().expect("held");
                txn.rollback().await.expect("rollback");
                news().send().expect("after the transaction: at once");
            })
            .await;
            assert_eq!(
                sent.on("list:news").len(),
                1,
                "only the one after the rollback"
            );
        })
        .await;
}
