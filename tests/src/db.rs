//! Databases for the hook tests: SQLite in memory, and a fresh PostgreSQL database per
//! test run on the local server, dropped afterwards.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

/// Where the local PostgreSQL server is; `TURBO_MODEL_PG_URL` overrides it.
pub fn postgres_admin_url() -> String {
    std::env::var("TURBO_MODEL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL database made for one test and dropped by [`PgDatabase::drop_now`].
pub struct PgDatabase {
    /// The connection to the fresh database.
    pub db: DatabaseConnection,
    admin: DatabaseConnection,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `turbo_model_<tag>_<pid>_<nanos>` and connects to it.
    ///
    /// # Errors
    ///
    /// When the server is unreachable or refuses; the message says which URL was tried.
    pub async fn create(tag: &str) -> Result<Self, String> {
        let admin_url = postgres_admin_url();
        let admin = Database::connect(&admin_url).await.map_err(|e| {
            format!("PostgreSQL at {admin_url} (start it with `service postgresql start`): {e}")
        })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("turbo_model_{tag}_{}_{nanos}", std::process::id());
        exec(&admin, &format!("CREATE DATABASE \"{name}\"")).await?;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => return Err(format!("cannot derive a database URL from {admin_url}")),
        };
        let db = Database::connect(&url)
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        Ok(Self {
            db,
            admin,
            name,
            url,
        })
    }

    /// The fresh database's URL, for another process.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Closes the connection and drops the database.
    ///
    /// # Errors
    ///
    /// When the drop fails.
    pub async fn drop_now(self) -> Result<(), String> {
        self.db.close().await.map_err(|e| e.to_string())?;
        exec(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        )
        .await
    }
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .map(|_| ())
        .map_err(|e: DbErr| format!("{sql}: {e}"))
}
