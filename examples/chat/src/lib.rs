//! The turbo-model tutorial chat.
//!
//! Rooms hold messages; a message posted in a room appears in every open window of that
//! room without a reload, with its author's name; an edited one changes and a deleted one
//! disappears; the room list shows each room's message count, live. The live part is
//! three things: `#[derive(ModelStream)]` on the entities, the async hooks in [`hooks`],
//! and `<% turbo_subscribe room %>` in `templates/chat/room.html`.
//!
//! The binary (`src/main.rs`) wires these functions together; the tests use them to run
//! the app on an ephemeral port.

pub mod assets;
pub mod entities;
pub mod hooks;
pub mod migration;
mod routes;
pub mod session;

use std::path::PathBuf;

use sea_orm::{ConnectOptions, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

pub use routes::{CONTENT_SECURITY_POLICY, router};

/// The default database: a SQLite file next to this crate's manifest, created on first run.
pub fn default_database_url() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chat.db");
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Connects to `url` (SQLite or PostgreSQL) and applies pending migrations.
///
/// A SQLite database runs in WAL mode with `synchronous = NORMAL`, the usual set-up
/// for a web app: a write costs one fsync at checkpoints instead of several per
/// transaction, readers do not wait for writers, and two chat processes can share
/// the file. A crash loses no committed data; a power cut may lose the last commits.
/// The pool does not ping a SQLite connection before handing it out: the database is a
/// file this process opens, with no server to lose, and each ping is a round trip to the
/// driver's thread (one less per statement; see BENCHMARKS.md, fourth sitting).
///
/// Several processes may start at once on one new database: the migrations run in one
/// transaction that first takes a lock (an advisory lock on PostgreSQL, the write lock
/// on SQLite), so one process migrates and the others then find nothing to do.
///
/// # Errors
///
/// The database error when the connection or a migration fails.
pub async fn database(url: &str) -> Result<DatabaseConnection, DbErr> {
    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};

    let mut options = ConnectOptions::new(url);
    options.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // See above: nothing to check, and a thread hand-off each time.
        options.test_before_acquire(false);
    }
    options.map_sqlx_sqlite_opts(|sqlite| {
        sqlite
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    });
    let db = sea_orm::Database::connect(options).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Applies pending migrations, one process at a time (see [`database`]).
async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS chat_migration_lock (id INTEGER PRIMARY KEY)",
        )
        .await?;
    }
    let txn = db.begin().await?;
    match db.get_database_backend() {
        // Held until the transaction ends; any number fixed for this application.
        DbBackend::Postgres => {
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7317302061)")
                .await?;
        }
        // A write first: the transaction takes SQLite's write lock before it reads what
        // is migrated, and another process's waits for it (the busy timeout).
        DbBackend::Sqlite => {
            txn.execute_unprepared("INSERT OR REPLACE INTO chat_migration_lock (id) VALUES (1)")
                .await?;
        }
        _ => {}
    }
    migration::Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// Where the templates live, whatever the working directory.
pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// Turbo from npm (`npm ci` in this crate's folder puts it here).
pub fn turbo_js_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@hotwired/turbo/dist/turbo.es2017-esm.js")
}

/// The pinned CDN copy used when the npm copy is missing (needs internet).
pub const TURBO_CDN_URL: &str =
    "https://cdn.jsdelivr.net/npm/@hotwired/turbo@8.0.23/dist/turbo.es2017-esm.js";

/// A [`turbo_model::Builder`] with the chat's templates, its rule for private rooms and
/// the database its async hooks read; call `.install()` on it.
pub fn turbo_builder(db: &DatabaseConnection) -> turbo_model::Builder {
    turbo_model::Turbo::builder()
        .templates(templates_dir())
        .authorize(session::authorize)
        .database(db.clone())
}
