//! Async hooks: after COMMIT, with a database connection, in the background, their
//! broadcasts in commit order.

use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DbErr, EntityTrait, Schema, Set, TransactionTrait,
};
use turbo_model::testing::capture;
use turbo_model::{AsyncHook, Db, HookContext, Saved, Turbo, context};

mod author {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "author")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "post")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) author_id: i32,
        pub(crate) text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

/// Renders a post with its author's name, read from the database; the first posts take
/// longest, so that a later one finishes first.
struct PostWithAuthor;

impl AsyncHook for PostWithAuthor {
    type Entity = post::Entity;

    async fn on_save(
        &self,
        cx: &HookContext,
        post: &post::Model,
        saved: Saved,
    ) -> turbo_model::Result<()> {
        if post.text == "panics" {
            panic!("a broken async hook");
        }
        tokio::time::sleep(Duration::from_millis(
            u64::try_from(40 - (post.id % 4) * 10).unwrap_or_default(),
        ))
        .await;
        let author = author::Entity::find_by_id(post.author_id)
            .one(cx.db()?)
            .await?
            .ok_or_else(|| turbo_model::Error::other("no such author"))?;
        let action = if saved.created { "new" } else { "edited" };
        turbo_model::stream("posts")?
            .append("post.html", context! { post, author, action })
            .target("posts")
            .send()
    }

    async fn on_delete(&self, _: &HookContext, post: &post::Model) -> turbo_model::Result<()> {
        turbo_model::stream("posts")?
            .remove()
            .target(format!("post-{}", post.id))
            .send()
    }
}

turbo_model::register_async!(PostWithAuthor);

struct Blog {
    turbo: Turbo,
    db: Db,
}

/// A fresh database and Turbo for each test: each test has a runtime of its own.
async fn blog() -> Blog {
    let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
    let schema = Schema::new(conn.get_database_backend());
    for table in [
        schema.create_table_from_entity(author::Entity),
        schema.create_table_from_entity(post::Entity),
    ] {
        conn.execute(&table).await.expect("create table");
    }
    author::ActiveModel {
        id: Set(1),
        name: Set("Ada".into()),
    }
    .insert(&conn)
    .await
    .expect("an author");
    let turbo = Turbo::builder()
        .secret("async hook test secret, 32 bytes long")
        .template(
            "post.html",
            r#"<p id="post-{{ post.id }}">{{ action }}: {{ post.text }} by {{ author.name }}</p>"#,
        )
        .database(conn.clone())
        .build()
        .expect("build");
    Blog {
        turbo,
        db: Db::new(conn),
    }
}

fn post(text: &str) -> post::ActiveModel {
    post::ActiveModel {
        author_id: Set(1),
        text: Set(text.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn async_hooks_query_after_commit_and_keep_commit_order() {
    let blog = blog().await;
    blog.turbo
        .scope(async {
            let ((), sent) = capture(async {
                // Three writes, the first slowest to render: the broadcasts still come in
                // the order the writes committed.
                let mut posts = Vec::new();
                for text in ["first", "second", "third"] {
                    posts.push(post(text).insert(&blog.db).await.expect("insert"));
                }
                // A rolled-back write queues nothing.
                let txn = blog.db.begin().await.expect("begin");
                post("rolled back").insert(&txn).await.expect("insert");
                txn.rollback().await.expect("rollback");
                // A committed one runs after the COMMIT, and reads the committed row.
                let txn = blog.db.begin().await.expect("begin");
                let mut edited: post::ActiveModel = posts[1].clone().into();
                edited.text = Set("second, edited".into());
                edited.update(&txn).await.expect("update");
                assert_eq!(txn.held(), 1, "queued at COMMIT, not before");
                txn.commit().await.expect("commit");
                // A delete runs its async hook with the deleted row.
                let third: post::ActiveModel = posts[2].clone().into();
                third.delete(&blog.db).await.expect("delete");
                blog.turbo.settled().await;
            })
            .await;
            let contents: Vec<&str> = sent.all().iter().filter_map(|r| r.content()).collect();
            let targets: Vec<_> = sent.all().iter().map(|r| r.target.clone()).collect();
            let id = |id: &str| Some(turbo_model::Target::Id(id.into()));
            assert_eq!(
                targets,
                [
                    id("posts"),
                    id("posts"),
                    id("posts"),
                    id("posts"),
                    id("post-3")
                ]
            );
            let first = sent.all().first().map_or(0, |r| {
                r.content()
                    .and_then(|c| c.split('"').nth(1))
                    .and_then(|id| id.trim_start_matches("post-").parse::<i32>().ok())
                    .unwrap_or(0)
            });
            assert_eq!(
                contents,
                [
                    format!(r#"<p id="post-{}">new: first by Ada</p>"#, first).as_str(),
                    format!(r#"<p id="post-{}">new: second by Ada</p>"#, first + 1).as_str(),
                    format!(r#"<p id="post-{}">new: third by Ada</p>"#, first + 2).as_str(),
                    format!(
                        r#"<p id="post-{}">edited: second, edited by Ada</p>"#,
                        first + 1
                    )
                    .as_str(),
                ]
            );
        })
        .await;
}

#[tokio::test]
async fn a_panicking_async_hook_is_logged_and_stops_nothing() {
    let blog = blog().await;
    blog.turbo
        .scope(async {
            let ((), sent) = capture(async {
                post("panics")
                    .insert(&blog.db)
                    .await
                    .expect("the write is kept");
                post("after the panic")
                    .insert(&blog.db)
                    .await
                    .expect("insert");
                blog.turbo.settled().await;
            })
            .await;
            assert_eq!(sent.len(), 1, "{sent}");
            assert!(
                sent.all()[0]
                    .content()
                    .is_some_and(|c| c.contains("new: after the panic by Ada")),
                "{sent}"
            );
        })
        .await;
}

#[tokio::test]
async fn a_full_queue_refuses_the_hook_and_the_caller_hears_of_it() {
    let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
    let schema = Schema::new(conn.get_database_backend());
    conn.execute(&schema.create_table_from_entity(post::Entity))
        .await
        .expect("create table");
    let turbo = Turbo::builder()
        .secret("async hook test secret, 32 bytes long")
        .hook_errors(turbo_model::HookErrors::Propagate)
        .async_hooks(1, 1024 * 1024, 1)
        .build()
        .expect("build");
    turbo
        .scope(async {
            // No database given: the first hook fails (logged); the queue holds one job.
            let results: Vec<Result<post::Model, DbErr>> = futures_util::future::join_all(
                (0..4).map(|n| post(&format!("burst {n}")).insert(&conn)),
            )
            .await;
            let refused = results
                .iter()
                .filter(|r| {
                    r.as_ref().is_err_and(|e| {
                        e.to_string()
                            .contains("the background queue is full (1 jobs or 1048576 bytes)")
                    })
                })
                .count();
            assert!(refused >= 1, "{results:?}");
            turbo.settled().await;
        })
        .await;
}
