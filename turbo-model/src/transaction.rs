//! After-commit delivery: [`Db`] and [`Transaction`], drop-in wrappers of SeaORM's
//! connection and transaction that hold broadcasts until COMMIT.
//!
//! SeaORM runs `ActiveModelBehavior` hooks inside the transaction, before COMMIT, and
//! has no commit callbacks. Broadcasting there would show users rows that a rollback
//! then erases. Open transactions through [`Db`] instead of `DatabaseConnection` and the
//! broadcasts made inside them wait: those of the hooks of the rows they write, and every
//! other broadcast sent, between `begin` and `commit`, by the task that began the
//! transaction (`stream(..).send()` in a handler, [`saved`](crate::saved) after a bulk
//! operation):
//!
//! - on COMMIT of the outermost transaction they are published, in order;
//! - on ROLLBACK, on an error in the [`transaction`](sea_orm::TransactionTrait::transaction)
//!   closure, on a panic, or when the transaction is dropped without commit, they are
//!   dropped;
//! - a nested transaction (a SAVEPOINT) hands its broadcasts to its parent when it
//!   commits and drops them when it rolls back, so an inner rollback drops only the
//!   inner broadcasts.
//!
//! Outside a transaction nothing changes: broadcasts go out at once. A broadcast sent
//! from another task (one spawned while the transaction is open) is not held: send it
//! after the commit.
//!
//! ```no_run
//! use sea_orm::TransactionTrait;
//! # async fn f(conn: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
//! let db = turbo_model::Db::new(conn);
//! let txn = db.begin().await?;
//! // ... ActiveModel inserts with &txn: their hooks' broadcasts are held ...
//! txn.commit().await?; // ... and published here
//! # Ok(()) }
//! ```
//!
//! A transaction begun on a plain `DatabaseConnection` still works, but its broadcasts
//! (and its async hooks) go out before COMMIT: SeaORM's `ConnectionTrait` gives the
//! hooks no way to wait for it. The first time that happens, a warning is logged.

use std::pin::Pin;
use std::sync::Arc;

use sea_orm::prelude::async_trait::async_trait;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionSession, TransactionTrait,
};

use crate::scope::{self, Held, Scope};

/// A `DatabaseConnection` whose transactions hold broadcasts until COMMIT.
///
/// Use it wherever the connection is used: it implements `ConnectionTrait` and
/// `TransactionTrait`, and dereferences to the `DatabaseConnection`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
}

impl Db {
    /// Wraps a connection.
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// The wrapped connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Unwraps the connection.
    pub fn into_inner(self) -> DatabaseConnection {
        self.conn
    }
}

impl From<DatabaseConnection> for Db {
    fn from(conn: DatabaseConnection) -> Self {
        Self::new(conn)
    }
}

impl std::ops::Deref for Db {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// A transaction opened through [`Db`] (or nested in another `Transaction`): it holds the
/// broadcasts its hooks make until COMMIT.
#[derive(Debug)]
pub struct Transaction {
    inner: DatabaseTransaction,
    held: Arc<Held>,
    /// Makes the broadcasts sent in this task wait for the COMMIT; ends with it.
    open: scope::open::Registration,
}

impl Transaction {
    fn new(inner: DatabaseTransaction, parent: Option<Arc<Held>>) -> Self {
        let held = Held::new(parent);
        Self {
            inner,
            open: scope::open::register(&held),
            held,
        }
    }

    /// Commits; then publishes the held broadcasts (or hands them to the enclosing
    /// transaction, for a nested one).
    ///
    /// The COMMIT and the release of the broadcasts happen together in a task of their
    /// own (on the current tokio runtime): a caller that stops waiting (a request
    /// cancelled, a timeout) cannot tear them apart, and a committed row is never left
    /// without its broadcasts.
    ///
    /// # Errors
    ///
    /// The database's error; the broadcasts are then dropped.
    pub async fn commit(self) -> Result<(), DbErr> {
        let Self { inner, held, open } = self;
        // From here on, what this task sends goes out at once (or to the enclosing
        // transaction): the held work is released by the commit below.
        drop(open);
        let commit = async move {
            inner.commit().await?;
            held.committed();
            Ok(())
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return commit.await;
        };
        // The task carries the caller's scope: a capture records what the release sends.
        match runtime.spawn(Scope::current().run(commit)).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(DbErr::Custom(format!("the commit task stopped: {error}"))),
        }
    }

    /// Rolls back and drops the held broadcasts.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn rollback(self) -> Result<(), DbErr> {
        let Self { inner, open, .. } = self;
        drop(open);
        inner.rollback().await
    }

    /// The SeaORM transaction inside.
    pub fn inner(&self) -> &DatabaseTransaction {
        &self.inner
    }

    /// Broadcasts held so far, waiting for COMMIT.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Runs `callback` in `txn`: commit on `Ok`, rollback on `Err` (and on a panic, by drop).
async fn run<T, E, F>(txn: Transaction, callback: F) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(&'c Transaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let result = callback(&txn).await;
    match result {
        Ok(value) => {
            txn.commit().await.map_err(TransactionError::Connection)?;
            Ok(value)
        }
        Err(error) => {
            txn.rollback().await.map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(error))
        }
    }
}

/// The broadcasts held by `db` if it is a [`Transaction`].
///
/// `ConnectionTrait` gives no way to ask a connection what it is, so the glue asks
/// `is_mock_connection()` (a plain getter everywhere else) and a `Transaction` answers it
/// truthfully while naming what it holds on the side ([`scope::probe`]).
/// Says once, loudly, that a write inside a transaction of SeaORM's own (not begun
/// through [`Db`]) ran hooks: their broadcasts cannot wait for its COMMIT.
pub(crate) fn warn_if_plain_transaction<C: ?Sized>() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::any::type_name::<C>().ends_with("DatabaseTransaction")
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            "a write in a SeaORM transaction not begun through turbo_model::Db ran hooks: \
             their broadcasts go out before COMMIT, even if it rolls back; begin \
             transactions on a turbo_model::Db (said once)"
        );
    }
}

pub(crate) fn held_by<C: ConnectionTrait + ?Sized>(db: &C) -> Option<Arc<Held>> {
    scope::probe(|| {
        let _ = db.is_mock_connection();
    })
}

macro_rules! delegate_connection {
    ($ty:ty, $field:ident, $probe:expr) => {
        #[async_trait]
        impl ConnectionTrait for $ty {
            fn get_database_backend(&self) -> DbBackend {
                self.$field.get_database_backend()
            }

            async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                self.$field.execute_raw(stmt).await
            }

            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                self.$field.execute_unprepared(sql).await
            }

            async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                self.$field.query_one_raw(stmt).await
            }

            async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                self.$field.query_all_raw(stmt).await
            }

            fn support_returning(&self) -> bool {
                self.$field.support_returning()
            }

            fn is_mock_connection(&self) -> bool {
                let probe: fn(&Self) = $probe;
                probe(self);
                self.$field.is_mock_connection()
            }
        }
    };
}

delegate_connection!(Db, conn, |_| {});
delegate_connection!(Transaction, inner, |txn| {
    scope::answer_probe(&txn.held);
});

macro_rules! begin_transactions {
    ($ty:ty, $field:ident, $parent:expr) => {
        #[async_trait]
        impl TransactionTrait for $ty {
            type Transaction = Transaction;

            async fn begin(&self) -> Result<Transaction, DbErr> {
                let parent: fn(&Self) -> Option<Arc<Held>> = $parent;
                Ok(Transaction::new(self.$field.begin().await?, parent(self)))
            }

            async fn begin_with_config(
                &self,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<Transaction, DbErr> {
                let parent: fn(&Self) -> Option<Arc<Held>> = $parent;
                let inner = self
                    .$field
                    .begin_with_config(isolation_level, access_mode)
                    .await?;
                Ok(Transaction::new(inner, parent(self)))
            }

            async fn begin_with_options(
                &self,
                options: TransactionOptions,
            ) -> Result<Transaction, DbErr> {
                let parent: fn(&Self) -> Option<Arc<Held>> = $parent;
                let inner = self.$field.begin_with_options(options).await?;
                Ok(Transaction::new(inner, parent(self)))
            }

            async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c Transaction,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let txn = self.begin().await.map_err(TransactionError::Connection)?;
                run(txn, callback).await
            }

            async fn transaction_with_config<F, T, E>(
                &self,
                callback: F,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<T, TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c Transaction,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let txn = self
                    .begin_with_config(isolation_level, access_mode)
                    .await
                    .map_err(TransactionError::Connection)?;
                run(txn, callback).await
            }
        }
    };
}

begin_transactions!(Db, conn, |_| None);
begin_transactions!(Transaction, inner, |txn| Some(Arc::clone(&txn.held)));

#[async_trait]
impl TransactionSession for Transaction {
    async fn commit(self) -> Result<(), DbErr> {
        Transaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), DbErr> {
        Transaction::rollback(self).await
    }
}
