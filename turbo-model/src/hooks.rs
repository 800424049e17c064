//! Hooks: application code that turns a saved or deleted row into broadcasts.
//!
//! A hook is a type implementing [`Hook`] for one entity, registered once with
//! [`register!`](crate::register). Any number of hooks may watch one entity; they run in
//! the order of their registered names (`module::Type`), whatever order the linker chose.
//!
//! # When hooks run
//!
//! The `ActiveModelBehavior` glue from `#[derive(ModelStream)]` runs hooks after
//! `ActiveModel::insert`, `update`, `save` and `delete`, and after `Model::delete`.
//! SeaORM does **not** call `ActiveModelBehavior` for bulk operations: `insert_many`,
//! `update_many`, `delete_many`, `delete_by_id` and `update_without_returning` run no
//! hooks. After those, call [`saved`](crate::saved) or [`deleted`](crate::deleted) for
//! each affected row yourself:
//!
//! ```no_run
//! # use sea_orm::entity::prelude::*;
//! # mod note { use sea_orm::entity::prelude::*;
//! #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
//! #   #[sea_orm(table_name = "note")]
//! #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub text: String }
//! #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
//! # }
//! # async fn f(db: &DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use turbo_model::Saved;
//!
//! let rows = note::Entity::insert_many([
//!     note::ActiveModel { text: sea_orm::Set("a".into()), ..Default::default() },
//!     note::ActiveModel { text: sea_orm::Set("b".into()), ..Default::default() },
//! ])
//! .exec_with_returning(db)
//! .await?;
//! for row in &rows {
//!     turbo_model::saved(row, Saved::CREATED)?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Errors and panics
//!
//! A hook that returns an error or panics is logged (`tracing` at `error`, with the
//! entity, the hook and the template) and the database write succeeds: a broken template
//! never loses a user's data. [`HookErrors::Propagate`] makes the write's caller see the
//! error instead (the row is already written; inside a transaction the caller may roll
//! back). The policy is the current [`Turbo`]'s: the one in
//! [scope](Turbo::scope), else the installed one.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;

use sea_orm::{EntityTrait, ModelTrait};

use crate::error::{Error, Result};
pub use crate::turbo::HookErrors;
use crate::turbo::Turbo;

/// Broadcasts for one entity's saves and deletes.
///
/// ```
/// use turbo_model::{Hook, Saved, context};
/// # mod message { use sea_orm::entity::prelude::*;
/// #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
/// #   #[sea_orm(table_name = "message")]
/// #   pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub room_id: i32, pub text: String }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # }
///
/// struct MessageStream;
///
/// impl Hook for MessageStream {
///     type Entity = message::Entity;
///
///     fn on_save(&self, message: &message::Model, saved: Saved) -> turbo_model::Result<()> {
///         if saved.created {
///             message
///                 .stream()
///                 .append("chat/components/message.html", context! { message })
///                 .target("messages")
///                 .send()?;
///         }
///         Ok(())
///     }
///
///     fn on_delete(&self, message: &message::Model) -> turbo_model::Result<()> {
///         message.stream().remove().target(message.dom_id()).send()
///     }
/// }
///
/// turbo_model::register!(MessageStream);
/// ```
pub trait Hook: Send + Sync + 'static {
    /// The entity whose rows this hook watches.
    type Entity: EntityTrait;

    /// Called after a row was inserted or updated through an `ActiveModel`, with the
    /// row as the database returned it.
    ///
    /// # Errors
    ///
    /// Return any error; it is logged (or propagated, see [`HookErrors`]).
    fn on_save(&self, model: &<Self::Entity as EntityTrait>::Model, saved: Saved) -> Result<()> {
        let _ = (model, saved);
        Ok(())
    }

    /// Called after a row was deleted, with the deleted row's data.
    ///
    /// # Errors
    ///
    /// Return any error; it is logged (or propagated, see [`HookErrors`]).
    fn on_delete(&self, model: &<Self::Entity as EntityTrait>::Model) -> Result<()> {
        let _ = model;
        Ok(())
    }
}

/// What kind of save ran a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Saved {
    /// `true` for an insert, `false` for an update.
    pub created: bool,
}

impl Saved {
    /// An insert.
    pub const CREATED: Self = Self { created: true };
    /// An update.
    pub const UPDATED: Self = Self { created: false };
}

/// One registered hook. Made by [`register!`](crate::register); not for use by hand.
#[doc(hidden)]
pub struct HookRegistration {
    name: &'static str,
    entity: fn() -> TypeId,
    hook: &'static dyn ErasedHook,
}

inventory::collect!(HookRegistration);

impl HookRegistration {
    /// A registration of `hook` under `name`.
    pub const fn new<H: Hook>(hook: &'static H, name: &'static str) -> Self {
        Self {
            name,
            entity: TypeId::of::<H::Entity>,
            hook,
        }
    }

    /// The registered name, `module::Type`.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// [`Hook`] with the model type erased, so hooks of all entities share a registry.
trait ErasedHook: Send + Sync {
    fn on_save(&self, model: &dyn Any, saved: Saved) -> Result<()>;
    fn on_delete(&self, model: &dyn Any) -> Result<()>;
}

impl<H: Hook> ErasedHook for H {
    fn on_save(&self, model: &dyn Any, saved: Saved) -> Result<()> {
        match model.downcast_ref() {
            Some(model) => Hook::on_save(self, model, saved),
            None => Ok(()),
        }
    }

    fn on_delete(&self, model: &dyn Any) -> Result<()> {
        match model.downcast_ref() {
            Some(model) => Hook::on_delete(self, model),
            None => Ok(()),
        }
    }
}

static REGISTRY: LazyLock<HashMap<TypeId, Vec<&'static HookRegistration>>> = LazyLock::new(|| {
    let mut by_entity: HashMap<TypeId, Vec<&'static HookRegistration>> = HashMap::new();
    for registration in inventory::iter::<HookRegistration> {
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

/// The hooks registered for entity `E`, in run order.
pub fn hooks_for<E: EntityTrait>() -> impl ExactSizeIterator<Item = &'static str> {
    registrations::<E>().iter().map(|h| h.name)
}

fn registrations<E: EntityTrait>() -> &'static [&'static HookRegistration] {
    REGISTRY.get(&TypeId::of::<E>()).map_or(&[], Vec::as_slice)
}

/// Whether any hook watches entity `E`; the glue skips all work when none does.
pub(crate) fn has_hooks<E: EntityTrait>() -> bool {
    !registrations::<E>().is_empty()
}

/// Runs the `on_save` hooks only (the glue queues the async ones itself).
pub(crate) fn run_saved<M: ModelTrait + 'static>(model: &M, saved: Saved) -> Result<()> {
    run::<M::Entity>("on_save", |hook| hook.on_save(model, saved))
}

/// Runs the `on_delete` hooks only.
pub(crate) fn run_deleted<M: ModelTrait + 'static>(model: &M) -> Result<()> {
    run::<M::Entity>("on_delete", |hook| hook.on_delete(model))
}

fn run<E: EntityTrait>(
    event: &'static str,
    call: impl Fn(&dyn ErasedHook) -> Result<()>,
) -> Result<()> {
    let policy = Turbo::current().map_or(HookErrors::Log, |turbo| turbo.hook_errors());
    let mut first_error = None;
    for registration in registrations::<E>() {
        let outcome = catch_unwind(AssertUnwindSafe(|| call(registration.hook)))
            .unwrap_or_else(|panic| Err(Error::other(panic_message(&*panic))));
        if let Err(source) = outcome {
            let error = Error::Hook {
                entity: std::any::type_name::<E>(),
                hook: registration.name,
                source: Box::new(source),
            };
            tracing::error!(
                entity = std::any::type_name::<E>(),
                hook = registration.name,
                event,
                template = error.template().unwrap_or("-"),
                error = %error,
                "turbo-model hook failed; the database write was kept"
            );
            first_error.get_or_insert(error);
        }
    }
    match (first_error, policy) {
        (Some(error), HookErrors::Propagate) => Err(error),
        _ => Ok(()),
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("the hook panicked: {text}")
}
