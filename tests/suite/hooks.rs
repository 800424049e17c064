//! Hooks through SeaORM, on SQLite and on the local PostgreSQL: which writes run them,
//! with what data, in what order, and what a broken hook does to the write.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
    ModelTrait, QueryFilter, Schema, Set, Unchanged,
};
use turbo_model::{Hook, Saved, StreamName, Turbo, context};
use turbo_model_tests::db::PgDatabase;

mod board {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "board")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: i32,
        pub(crate) name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "note")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        #[stream(parent = super::board::Entity)]
        pub(crate) board_id: i32,
        pub(crate) text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

mod fragile {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "fragile")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}
}

/// What the hooks saw, in the order they ran: `"<hook> <event> board=<id> <text>"`.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn seen(board: i32) -> Vec<String> {
    SEEN.lock()
        .map(|s| {
            s.iter()
                .filter(|e| e.contains(&format!(" board={board} ")))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn record(hook: &str, event: &str, note: &note::Model) {
    if let Ok(mut seen) = SEEN.lock() {
        seen.push(format!(
            "{hook} {event} board={} {}",
            note.board_id, note.text
        ));
    }
}

/// Broadcasts notes to their board; registered before `AuditNotes` but runs second
/// because hooks run in name order (`suite::hooks::AuditNotes` < `suite::hooks::NoteStream`).
struct NoteStream;

impl Hook for NoteStream {
    type Entity = note::Entity;

    fn on_save(&self, note: &note::Model, saved: Saved) -> turbo_model::Result<()> {
        record(
            "NoteStream",
            if saved.created { "created" } else { "updated" },
            note,
        );
        let stream = note.parent_stream();
        let broadcast = if saved.created {
            stream
                .append("note.html", context! { note })
                .target("notes")
        } else {
            stream
                .replace("note.html", context! { note })
                .target(format!("note-{}", note.id))
        };
        broadcast.send()
    }

    fn on_delete(&self, note: &note::Model) -> turbo_model::Result<()> {
        record("NoteStream", "deleted", note);
        note.parent_stream()
            .remove()
            .target(format!("note-{}", note.id))
            .send()
    }
}

struct AuditNotes;

impl Hook for AuditNotes {
    type Entity = note::Entity;

    fn on_save(&self, note: &note::Model, _: Saved) -> turbo_model::Result<()> {
        record("AuditNotes", "saved", note);
        Ok(())
    }
}

turbo_model::register!(NoteStream);
turbo_model::register!(AuditNotes);

/// Renders a template that does not exist.
struct BrokenTemplate;

impl Hook for BrokenTemplate {
    type Entity = fragile::Entity;

    fn on_save(&self, row: &fragile::Model, _: Saved) -> turbo_model::Result<()> {
        row.stream()
            .append("missing/template.html", context! { row })
            .target("x")
            .send()
    }
}

/// Panics.
struct Panics;

impl Hook for Panics {
    type Entity = fragile::Entity;

    fn on_save(&self, _: &fragile::Model, _: Saved) -> turbo_model::Result<()> {
        panic!("boom in a hook");
    }
}

turbo_model::register!(BrokenTemplate);
turbo_model::register!(Panics);

/// Everything logged in this process, for asserting on hook failures.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("turbo_model=info")
            .with_writer(move || writer.clone())
            .try_init();
        buffer
    })
}

fn turbo() -> &'static Turbo {
    static TURBO: OnceLock<Turbo> = OnceLock::new();
    TURBO.get_or_init(|| {
        logs();
        Turbo::builder()
            .secret("hooks test secret, thirty-two bytes or more")
            .template(
                "note.html",
                r#"<p id="note-{{ note.id }}">{{ note.text }}</p>"#,
            )
            .build()
            .unwrap_or_else(|e| panic!("build: {e}"))
    })
}

async fn create_tables(db: &DatabaseConnection) {
    let schema = Schema::new(db.get_database_backend());
    for statement in [
        schema.create_table_from_entity(board::Entity),
        schema.create_table_from_entity(note::Entity),
        schema.create_table_from_entity(fragile::Entity),
    ] {
        db.execute(&statement)
            .await
            .unwrap_or_else(|e| panic!("create table: {e}"));
    }
}

/// A subscriber on a board's stream, straight on the hub.
struct Watcher(turbo_model::hub::Connection);

impl Watcher {
    fn on(board: i32) -> Self {
        let mut connection = turbo().hub().connect();
        let name = StreamName::new(format!("board:{board}")).expect("valid name");
        connection.subscribe(&name, None);
        Self(connection)
    }

    async fn html(&mut self) -> String {
        let frame = tokio::time::timeout(Duration::from_secs(5), self.0.next_frame())
            .await
            .unwrap_or_else(|_| panic!("no frame within 5 s"))
            .unwrap_or_else(|| panic!("hub closed"));
        frame.html().to_owned()
    }

    async fn silent(&mut self) {
        let quiet = tokio::time::timeout(Duration::from_millis(200), self.0.next_frame()).await;
        assert!(quiet.is_err(), "expected no broadcast, got {quiet:?}");
    }
}

fn append(id: i32, text: &str) -> String {
    format!(
        r#"<turbo-stream action="append" target="notes"><template><p id="note-{id}">{text}</p></template></turbo-stream>"#
    )
}

fn replace(id: i32, text: &str) -> String {
    format!(
        r#"<turbo-stream action="replace" target="note-{id}"><template><p id="note-{id}">{text}</p></template></turbo-stream>"#
    )
}

fn remove(id: i32) -> String {
    format!(r#"<turbo-stream action="remove" target="note-{id}"></turbo-stream>"#)
}

/// The whole story on one database; `board` keeps the two backends' streams apart.
async fn hooks_follow_every_activemodel_write(db: &DatabaseConnection, board: i32) {
    turbo();
    create_tables(db).await;
    board::ActiveModel {
        id: Set(board),
        name: Set("plans".into()),
    }
    .insert(db)
    .await
    .expect("insert board");
    let mut watcher = Watcher::on(board);

    // insert: created, and both hooks run in name order
    let first = note::ActiveModel {
        board_id: Set(board),
        text: Set("first".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert");
    assert_eq!(watcher.html().await, append(first.id, "first"));
    assert_eq!(
        seen(board),
        [
            format!("AuditNotes saved board={board} first"),
            format!("NoteStream created board={board} first"),
        ]
    );

    // update: not created, with the row as the database returned it
    let updated = note::ActiveModel {
        id: Unchanged(first.id),
        text: Set("first <edited>".into()),
        ..Default::default()
    }
    .update(db)
    .await
    .expect("update");
    assert_eq!(updated.board_id, board);
    assert_eq!(
        watcher.html().await,
        replace(first.id, "first &lt;edited&gt;")
    );

    // save: insert path, then update path
    let second = note::ActiveModel {
        board_id: Set(board),
        text: Set("second".into()),
        ..Default::default()
    }
    .save(db)
    .await
    .expect("save new");
    let second_id = second.id.clone().unwrap();
    assert_eq!(watcher.html().await, append(second_id, "second"));
    let mut second = second;
    second.text = Set("second again".into());
    second.save(db).await.expect("save existing");
    assert_eq!(watcher.html().await, replace(second_id, "second again"));

    // Model::delete: on_delete gets the row
    let row = note::Entity::find_by_id(first.id)
        .one(db)
        .await
        .expect("find")
        .expect("exists");
    row.delete(db).await.expect("delete");
    assert_eq!(watcher.html().await, remove(first.id));

    // ActiveModel with only the key: the row is loaded, so on_delete still has its text
    note::ActiveModel {
        id: Set(second_id),
        ..Default::default()
    }
    .delete(db)
    .await
    .expect("delete by key");
    assert_eq!(watcher.html().await, remove(second_id));
    assert_eq!(
        seen(board).last().map(String::as_str),
        Some(format!("NoteStream deleted board={board} second again").as_str())
    );

    // a key that matches nothing: no hook, no broadcast
    let before = seen(board).len();
    note::ActiveModel {
        id: Set(987_654),
        ..Default::default()
    }
    .delete(db)
    .await
    .expect("delete nothing");
    watcher.silent().await;
    assert_eq!(seen(board).len(), before);

    // bulk operations run no hooks; `turbo_model::saved` broadcasts for them
    note::Entity::insert_many([
        note::ActiveModel {
            board_id: Set(board),
            text: Set("bulk a".into()),
            ..Default::default()
        },
        note::ActiveModel {
            board_id: Set(board),
            text: Set("bulk b".into()),
            ..Default::default()
        },
    ])
    .exec(db)
    .await
    .expect("insert_many");
    watcher.silent().await;
    let bulk = note::Entity::find()
        .filter(note::Column::BoardId.eq(board))
        .all(db)
        .await
        .expect("find bulk");
    assert_eq!(bulk.len(), 2);
    for row in &bulk {
        turbo_model::saved(row, Saved::CREATED).expect("hooks run");
        assert_eq!(watcher.html().await, append(row.id, &row.text));
    }
    note::Entity::delete_many()
        .filter(note::Column::BoardId.eq(board))
        .exec(db)
        .await
        .expect("delete_many");
    watcher.silent().await;
    for row in &bulk {
        turbo_model::deleted(row).expect("hooks run");
        assert_eq!(watcher.html().await, remove(row.id));
    }
}

/// A hook that fails or panics is logged with entity, hook and template; the row stays.
async fn a_broken_hook_never_fails_the_write(db: &DatabaseConnection, text: &str) {
    let row = fragile::ActiveModel {
        text: Set(text.into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("the write succeeds although both hooks fail");
    let stored = fragile::Entity::find_by_id(row.id)
        .one(db)
        .await
        .expect("find")
        .expect("the row was kept");
    assert_eq!(stored.text, text);
    let logs = String::from_utf8_lossy(&logs().0.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("hook `suite::hooks::BrokenTemplate` on entity `suite::hooks::fragile::Entity` failed: rendering `missing/template.html` failed:"),
        "{logs}"
    );
    assert!(
        logs.contains(r#"template="missing/template.html""#),
        "{logs}"
    );
    assert!(
        logs.contains("hook `suite::hooks::Panics` on entity `suite::hooks::fragile::Entity` failed: the hook panicked: boom in a hook"),
        "{logs}"
    );
}

#[tokio::test]
async fn hooks_on_sqlite() {
    turbo()
        .scope(async {
            let db = Database::connect("sqlite::memory:").await.expect("sqlite");
            hooks_follow_every_activemodel_write(&db, 1000).await;
            a_broken_hook_never_fails_the_write(&db, "sqlite row").await;
        })
        .await;
}

#[tokio::test]
async fn hooks_on_postgres() {
    turbo()
        .scope(async {
            let pg = PgDatabase::create("hooks")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            hooks_follow_every_activemodel_write(&pg.db, 2000).await;
            a_broken_hook_never_fails_the_write(&pg.db, "postgres row").await;
            pg.drop_now().await.unwrap_or_else(|e| panic!("{e}"));
        })
        .await;
}

#[test]
fn hooks_run_in_name_order_whatever_the_registration_order() {
    assert_eq!(
        turbo_model::hooks::hooks_for::<note::Entity>().collect::<Vec<_>>(),
        ["suite::hooks::AuditNotes", "suite::hooks::NoteStream"]
    );
}
