//! Async hooks: broadcasts that need the database, rendered after COMMIT, in the
//! background.
//!
//! A [`Hook`](crate::Hook) runs inside the write, with the row and nothing else. A
//! message that shows its author's name, a room list that shows each room's count, need
//! a query first. An [`AsyncHook`] gets a [`HookContext`] with a database connection and
//! runs later, the way turbo-rails' `broadcast_*_later` jobs do:
//!
//! - after the COMMIT of the transaction that wrote the row (after the write itself
//!   outside a transaction), so it reads committed data and never broadcasts rolled-back
//!   rows. The transaction must be begun through [`Db`](crate::Db): one of SeaORM's own
//!   cannot be waited for, and its hooks are queued at once (a warning says so once);
//! - on the [`Turbo`]'s background queue: the request does not wait for it. The queue is
//!   bounded ([`Builder::async_hooks`](crate::Builder::async_hooks): 10 000 jobs, 64 MiB
//!   of rows, 4 at once); a hook that does not fit is not run, and is logged (with
//!   [`HookErrors::Propagate`], outside a transaction, the
//!   write's caller gets the error);
//! - several at once, but what each sends is released in the order the writes
//!   committed: broadcasts keep commit order on every stream;
//! - an error or a panic is logged with the entity, the hook and the template, like a
//!   hook's, and stops nothing else;
//! - [`Turbo::settled`] waits for them (tests), and [`Turbo::shutdown`] lets them finish
//!   within its grace period. The queue lives in memory: a process killed (or past its
//!   grace period) with hooks still queued loses their broadcasts. Their rows are
//!   committed, so a page shows them when it next loads; on one process every page
//!   refreshes after the restart anyway (a new epoch).
//!
//! ```
//! # mod message { use sea_orm::entity::prelude::*;
//! #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
//! #   #[sea_orm(table_name = "message")]
//! #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub room_id: i32, pub author_id: i32, pub text: String }
//! #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
//! # }
//! # mod user { use sea_orm::entity::prelude::*;
//! #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
//! #   #[sea_orm(table_name = "user")]
//! #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
//! #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
//! #   impl ActiveModelBehavior for ActiveModel {}
//! # }
//! use sea_orm::EntityTrait;
//! use turbo_model::{AsyncHook, HookContext, Saved, context};
//!
//! struct MessageWithAuthor;
//!
//! impl AsyncHook for MessageWithAuthor {
//!     type Entity = message::Entity;
//!
//!     async fn on_save(
//!         &self,
//!         cx: &HookContext,
//!         message: &message::Model,
//!         saved: Saved,
//!     ) -> turbo_model::Result<()> {
//!         let author = user::Entity::find_by_id(message.author_id).one(cx.db()?).await?;
//!         let stream = turbo_model::stream(format!("room:{}", message.room_id))?;
//!         if saved.created {
//!             stream
//!                 .append("message.html", context! { message, author })
//!                 .target("messages")
//!                 .send()?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! turbo_model::register_async!(MessageWithAuthor);
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::LazyLock;

use futures_util::FutureExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, ModelTrait};

use crate::error::{Error, Result};
use crate::hooks::{HookErrors, Saved, panic_message};
use crate::scope::Scope;
use crate::transaction;
use crate::turbo::Turbo;

type ModelOf<H> = <<H as AsyncHook>::Entity as EntityTrait>::Model;

/// Broadcasts for one entity's saves and deletes that need the database: they run after
/// COMMIT, in the background (see the [module docs](self)). Register with
/// [`register_async!`](crate::register_async).
pub trait AsyncHook: Send + Sync + 'static {
    /// The entity whose rows this hook watches.
    type Entity: EntityTrait;

    /// Called after the row was inserted or updated through an `ActiveModel` and the
    /// write committed, with the row as the database returned it.
    ///
    /// # Errors
    ///
    /// Return any error; it is logged with the entity, the hook and the template.
    fn on_save(
        &self,
        cx: &HookContext,
        model: &ModelOf<Self>,
        saved: Saved,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (cx, model, saved);
        async { Ok(()) }
    }

    /// Called after the row was deleted and the delete committed, with its data.
    ///
    /// # Errors
    ///
    /// As [`on_save`](Self::on_save).
    fn on_delete(
        &self,
        cx: &HookContext,
        model: &ModelOf<Self>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (cx, model);
        async { Ok(()) }
    }
}

/// What an async hook gets besides the row.
#[derive(Debug)]
pub struct HookContext {
    turbo: Turbo,
}

impl HookContext {
    /// The database connection given to [`Builder::database`](crate::Builder::database).
    ///
    /// # Errors
    ///
    /// [`Error::NoDatabase`] when the builder was given none.
    pub fn db(&self) -> Result<&DatabaseConnection> {
        self.turbo.database().ok_or(Error::NoDatabase)
    }

    /// The [`Turbo`] the hook sends through (also the one in scope while it runs).
    pub fn turbo(&self) -> &Turbo {
        &self.turbo
    }
}

type Running<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// [`AsyncHook`] with the model type erased.
trait ErasedAsyncHook: Send + Sync {
    fn on_save<'a>(
        &'a self,
        cx: &'a HookContext,
        model: &'a (dyn Any + Send),
        saved: Saved,
    ) -> Running<'a>;
    fn on_delete<'a>(&'a self, cx: &'a HookContext, model: &'a (dyn Any + Send)) -> Running<'a>;
}

impl<H: AsyncHook> ErasedAsyncHook for H {
    fn on_save<'a>(
        &'a self,
        cx: &'a HookContext,
        model: &'a (dyn Any + Send),
        saved: Saved,
    ) -> Running<'a> {
        match (model as &dyn Any).downcast_ref::<ModelOf<H>>() {
            Some(model) => Box::pin(AsyncHook::on_save(self, cx, model, saved)),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn on_delete<'a>(&'a self, cx: &'a HookContext, model: &'a (dyn Any + Send)) -> Running<'a> {
        match (model as &dyn Any).downcast_ref::<ModelOf<H>>() {
            Some(model) => Box::pin(AsyncHook::on_delete(self, cx, model)),
            None => Box::pin(async { Ok(()) }),
        }
    }
}

/// One registered async hook. Made by [`register_async!`](crate::register_async); not for
/// use by hand.
#[doc(hidden)]
pub struct AsyncHookRegistration {
    name: &'static str,
    entity: fn() -> TypeId,
    entity_name: fn() -> &'static str,
    hook: &'static dyn ErasedAsyncHook,
    /// What a row of the entity weighs in the queue: its JSON.
    size: fn(&dyn Any) -> usize,
}

inventory::collect!(AsyncHookRegistration);

impl AsyncHookRegistration {
    /// A registration of `hook` under `name`.
    pub const fn new<H: AsyncHook>(hook: &'static H, name: &'static str) -> Self
    where
        ModelOf<H>: serde::Serialize,
    {
        Self {
            name,
            entity: TypeId::of::<H::Entity>,
            entity_name: std::any::type_name::<H::Entity>,
            hook,
            size: size_of_row::<ModelOf<H>>,
        }
    }
}

fn size_of_row<M: serde::Serialize + 'static>(model: &dyn Any) -> usize {
    model
        .downcast_ref::<M>()
        .and_then(|model| serde_json::to_vec(model).ok())
        .map_or(std::mem::size_of::<M>(), |json| json.len())
}

static REGISTRY: LazyLock<HashMap<TypeId, Vec<&'static AsyncHookRegistration>>> =
    LazyLock::new(|| {
        let mut by_entity: HashMap<TypeId, Vec<&'static AsyncHookRegistration>> = HashMap::new();
        for registration in inventory::iter::<AsyncHookRegistration> {
            by_entity
                .entry((registration.entity)())
                .or_default()
                .push(registration);
        }
        for hooks in by_entity.values_mut() {
            hooks.sort_by_key(|h| h.name);
        }
        by_entity
    });

fn registrations<E: EntityTrait>() -> &'static [&'static AsyncHookRegistration] {
    REGISTRY.get(&TypeId::of::<E>()).map_or(&[], Vec::as_slice)
}

/// Whether any async hook watches entity `E`.
pub(crate) fn has_hooks<E: EntityTrait>() -> bool {
    !registrations::<E>().is_empty()
}

/// The async hooks registered for entity `E`, in queue order.
pub fn async_hooks_for<E: EntityTrait>() -> impl ExactSizeIterator<Item = &'static str> {
    registrations::<E>().iter().map(|h| h.name)
}

/// What happened to a row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Saved(Saved),
    Deleted,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Self::Saved(_) => "on_save",
            Self::Deleted => "on_delete",
        }
    }
}

/// Queues `model`'s async hooks for `event`: after the COMMIT of the transaction `db`
/// (or the task) has open, else now.
///
/// # Errors
///
/// With [`HookErrors::Propagate`], when a hook could not be queued (it is logged in any
/// case); inside a transaction the queueing happens at COMMIT and nobody waits for it.
pub(crate) fn queue<M, C>(model: &M, event: Event, db: Option<&C>) -> Result<()>
where
    M: ModelTrait + 'static,
    C: ConnectionTrait,
{
    let hooks = registrations::<M::Entity>();
    if hooks.is_empty() {
        return Ok(());
    }
    let Some(turbo) = Turbo::current() else {
        tracing::error!(
            entity = std::any::type_name::<M::Entity>(),
            "async hooks not run: turbo-model is not installed"
        );
        return Err(Error::NotInstalled);
    };
    let held = db
        .and_then(transaction::held_by)
        .or_else(|| Scope::current().transaction);
    if held.is_none() && db.is_some() {
        transaction::warn_if_plain_transaction::<C>();
    }
    let scope = Scope {
        transaction: None,
        ..turbo.entered()
    };
    let model = model.clone();
    match held {
        Some(held) => {
            held.hold(Box::new(move || {
                let _ = submit(&turbo, hooks, &model, event, &scope);
            }));
            Ok(())
        }
        None => submit(&turbo, hooks, &model, event, &scope),
    }
}

/// Submits one job per hook.
fn submit<M: ModelTrait + 'static>(
    turbo: &Turbo,
    hooks: &'static [&'static AsyncHookRegistration],
    model: &M,
    event: Event,
    scope: &Scope,
) -> Result<()> {
    let mut first_error = None;
    for registration in hooks {
        let size = (registration.size)(model);
        let row: Box<dyn Any + Send> = Box::new(model.clone());
        let cx = HookContext {
            turbo: turbo.clone(),
        };
        let job = Box::new(move || -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(run(registration, cx, row, event))
        });
        if let Err(full) = turbo.run_later(size, scope.clone(), job) {
            let error = Error::Hook {
                entity: (registration.entity_name)(),
                hook: registration.name,
                source: Box::new(Error::other(full.to_string())),
            };
            tracing::error!(
                entity = (registration.entity_name)(),
                hook = registration.name,
                event = event.name(),
                error = %error,
                "async hook not run: the background queue is full"
            );
            first_error.get_or_insert(error);
        }
    }
    match (first_error, turbo.hook_errors()) {
        (Some(error), HookErrors::Propagate) => Err(error),
        _ => Ok(()),
    }
}

/// Runs one hook on one row, logging what goes wrong.
async fn run(
    registration: &'static AsyncHookRegistration,
    cx: HookContext,
    row: Box<dyn Any + Send>,
    event: Event,
) {
    let running = match event {
        Event::Saved(saved) => registration.hook.on_save(&cx, &*row, saved),
        Event::Deleted => registration.hook.on_delete(&cx, &*row),
    };
    let outcome = AssertUnwindSafe(running)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(Error::other(panic_message(&*panic))));
    if let Err(source) = outcome {
        let error = Error::Hook {
            entity: (registration.entity_name)(),
            hook: registration.name,
            source: Box::new(source),
        };
        tracing::error!(
            entity = (registration.entity_name)(),
            hook = registration.name,
            event = event.name(),
            template = error.template().unwrap_or("-"),
            error = %error,
            "turbo-model async hook failed; the database write was kept"
        );
    }
}
