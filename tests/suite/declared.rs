//! Declarative broadcasts on the derive: `broadcasts_to = parent` and `broadcasts`, with
//! the `dom_id` convention, compound streams in the tag, through SeaORM on SQLite.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, Schema, Set, TransactionTrait,
};
use turbo_model::testing::{Broadcasts, capture};
use turbo_model::{Action, Db, Target, Turbo};

mod shelf {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "shelf")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) label: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

/// Created books are appended to `#books` on their shelf's stream; edits replace, deletes
/// remove `#book_<id>` there.
mod book {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "book")]
    #[stream(broadcasts_to = parent, template = "book.html", target = "books")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        #[stream(parent = super::shelf::Entity)]
        pub(crate) shelf_id: Option<i32>,
        pub(crate) title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

/// Notices are prepended to `#notice` on the `notice` stream when created; edits and
/// deletes go to each notice's own stream.
mod notice {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "notice")]
    #[stream(broadcasts, template = "notice.html", inserts_by = prepend)]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) headline: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

async fn library() -> (Turbo, Db, DatabaseConnection) {
    let conn = Database::connect("sqlite::memory:").await.expect("sqlite");
    let schema = Schema::new(conn.get_database_backend());
    for table in [
        schema.create_table_from_entity(shelf::Entity),
        schema.create_table_from_entity(book::Entity),
        schema.create_table_from_entity(notice::Entity),
    ] {
        conn.execute(&table).await.expect("create table");
    }
    let turbo = Turbo::builder()
        .secret("declared broadcasts test secret, 32+")
        .template(
            "book.html",
            r#"<li id="{{ book | dom_id }}">{{ row.title }} <a id="{{ book | dom_id(prefix="edit") }}">edit</a></li>"#,
        )
        .template("notice.html", r#"<p id="{{ notice | dom_id }}">{{ notice.headline }}</p>"#)
        .template(
            "shelf.html",
            r#"<% turbo_subscribe shelf "books" %><% turbo_subscribe shelf %>"#,
        )
        .build()
        .expect("build");
    (turbo, Db::new(conn.clone()), conn)
}

fn id(id: &str) -> Option<Target> {
    Some(Target::Id(id.to_owned()))
}

/// `(stream, action, target, content)` of each broadcast.
fn summary(sent: &Broadcasts) -> Vec<(String, Action, Option<Target>, Option<String>)> {
    sent.all()
        .iter()
        .map(|r| {
            (
                r.stream.clone(),
                r.action,
                r.target.clone(),
                r.content().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn broadcasts_to_parent_appends_replaces_and_removes_by_dom_id() {
    let (turbo, db, _conn) = library().await;
    turbo
        .scope(async {
            let ((), sent) = capture(async {
                shelf::ActiveModel {
                    id: Set(3),
                    label: Set("Poetry".into()),
                }
                .insert(&db)
                .await
                .expect("a shelf");
                let book = book::ActiveModel {
                    shelf_id: Set(Some(3)),
                    title: Set("Odes & Sonnets".into()),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .expect("a book");
                assert_eq!(book.dom_id(), "book_1");
                assert_eq!(turbo_model::dom_id(&book, Some("edit")), "edit_book_1");
                let mut edited: book::ActiveModel = book.clone().into();
                edited.title = Set("Odes".into());
                let book = edited.update(&db).await.expect("edited");
                // Rolled back: nothing.
                let txn = db.begin().await.expect("begin");
                let mut doomed: book::ActiveModel = book.clone().into();
                doomed.title = Set("never".into());
                doomed.update(&txn).await.expect("update");
                txn.rollback().await.expect("rollback");
                // A book on no shelf has no parent stream: nothing.
                book::ActiveModel {
                    shelf_id: Set(None),
                    title: Set("Loose leaf".into()),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .expect("a loose book");
                let book: book::ActiveModel = book.into();
                book.delete(&db).await.expect("deleted");
            })
            .await;
            assert_eq!(
                summary(&sent),
                [
                    (
                        "shelf:3".to_owned(),
                        Action::Append,
                        id("books"),
                        Some(
                            r#"<li id="book_1">Odes &amp; Sonnets <a id="edit_book_1">edit</a></li>"#
                                .to_owned()
                        )
                    ),
                    (
                        "shelf:3".to_owned(),
                        Action::Replace,
                        id("book_1"),
                        Some(r#"<li id="book_1">Odes <a id="edit_book_1">edit</a></li>"#.to_owned())
                    ),
                    ("shelf:3".to_owned(), Action::Remove, id("book_1"), None),
                ]
            );
        })
        .await;
}

#[tokio::test]
async fn broadcasts_prepends_to_the_entity_stream_and_changes_go_to_the_rows_own() {
    let (turbo, db, _conn) = library().await;
    turbo
        .scope(async {
            let ((), sent) = capture(async {
                let notice = notice::ActiveModel {
                    headline: Set("Closed <Monday>".into()),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .expect("a notice");
                let mut edited: notice::ActiveModel = notice.into();
                edited.headline = Set("Open Monday".into());
                let notice = edited.update(&db).await.expect("edited");
                let notice: notice::ActiveModel = notice.into();
                notice.delete(&db).await.expect("deleted");
            })
            .await;
            assert_eq!(
                summary(&sent),
                [
                    (
                        "notice".to_owned(),
                        Action::Prepend,
                        id("notice"),
                        Some(r#"<p id="notice_1">Closed &lt;Monday&gt;</p>"#.to_owned())
                    ),
                    (
                        "notice:1".to_owned(),
                        Action::Replace,
                        id("notice_1"),
                        Some(r#"<p id="notice_1">Open Monday</p>"#.to_owned())
                    ),
                    ("notice:1".to_owned(), Action::Remove, id("notice_1"), None),
                ]
            );
        })
        .await;
}

#[tokio::test]
async fn a_tag_with_a_model_and_a_name_subscribes_to_the_compound_stream() {
    let (turbo, _db, _conn) = library().await;
    let shelf = shelf::Model {
        id: 3,
        label: "Poetry".into(),
    };
    let html = turbo
        .render("shelf.html", &turbo_model::context! { shelf })
        .expect("renders");
    let subscribed: Vec<String> = turbo_model::testing::subscriptions(&html)
        .into_iter()
        .map(|s| s.stream)
        .collect();
    assert_eq!(subscribed, ["shelf:3:books", "shelf:3"]);
    let rust = shelf.stream().join("books").expect("a compound stream");
    assert_eq!(rust.name().as_str(), "shelf:3:books");
}

#[tokio::test]
async fn several_actions_go_out_as_one_message_and_are_recorded_one_by_one() {
    use turbo_model::StreamAction;
    use turbo_model_tests::standalone::Standalone;
    use turbo_model_tests::ws::Client;

    let server = Standalone::start(Turbo::builder()).await;
    let mut client = Client::connect(&server.ws_url()).await;
    let reply = client.subscribe(&server.token("board")).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let (sent, recorded) = capture(async {
        turbo_model::stream("board")
            .expect("a stream")
            .custom("set_title", None)
            .attribute("title", "2 new")
            .and(StreamAction::append(turbo_model::Content::text("<hi>")).target("log"))
            .and(StreamAction::remove().target("m_1"))
            .send_with(&server.turbo)
    })
    .await;
    sent.expect("sent");
    let frame = client.json().await;
    assert_eq!(
        frame["html"],
        r#"<turbo-stream action="set_title" title="2 new"></turbo-stream><turbo-stream action="append" target="log"><template>&lt;hi&gt;</template></turbo-stream><turbo-stream action="remove" target="m_1"></turbo-stream>"#,
        "{frame}"
    );
    client
        .expect_silence(std::time::Duration::from_millis(200))
        .await;
    assert_eq!(
        summary(&recorded),
        [
            ("board".to_owned(), Action::Custom("set_title"), None, None),
            (
                "board".to_owned(),
                Action::Append,
                id("log"),
                Some("&lt;hi&gt;".to_owned())
            ),
            ("board".to_owned(), Action::Remove, id("m_1"), None),
        ]
    );
    assert_eq!(
        recorded.all()[2].html,
        r#"<turbo-stream action="remove" target="m_1"></turbo-stream>"#
    );
}
