//! turbo-model outside the ORM, part one: a domain event handler.
//!
//! An order moves through five states: placed → paid → packed → shipped → delivered.
//! Each step is an [`OrderEvent`](events::OrderEvent) published on an in-process
//! [`EventBus`](events::EventBus); the bus's handler updates the order with SeaORM and
//! then replaces the order's status badge on every open page of the order. The live
//! part is two things: the `stream(...).replace(...).send()` call in [`events`], and
//! `<% turbo_subscribe order_stream %>` in `templates/orders/show.html`.
//!
//! The binary (`src/main.rs`) wires these functions together; the tests use them to run
//! the app on an ephemeral port.

pub mod courier;
pub mod events;
pub mod order;
mod routes;

use std::path::PathBuf;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbErr, Schema};

pub use routes::router;

/// How often the pretend courier of "Simulate shipping" reports the next step.
pub const COURIER_STEP: Duration = Duration::from_secs(1);

/// The default database: a SQLite file next to this crate's manifest, created on first run.
pub fn default_database_url() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("orders.db");
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Connects to the SQLite database at `url` (`sqlite::memory:` works) and creates the
/// orders table if it is missing.
///
/// # Errors
///
/// The database error when the connection or the table creation fails.
pub async fn database(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options.sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await?;
    let table = Schema::new(db.get_database_backend())
        .create_table_from_entity(order::Entity)
        .if_not_exists()
        .to_owned();
    db.execute(&table).await?;
    Ok(db)
}

/// Where the templates live, whatever the working directory.
pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A [`turbo_model::Builder`] with the orders' templates; call `.install()` on it.
pub fn turbo_builder() -> turbo_model::Builder {
    turbo_model::Turbo::builder().templates(templates_dir())
}
