//! The `ActiveModelBehavior` glue that `#[derive(ModelStream)]` and
//! `#[turbo_model::active_model_behavior]` install: SeaORM's lifecycle hooks call these.
//!
//! SeaORM runs `after_save` and `after_delete` inside the caller's transaction (if any),
//! after the statement succeeded. Inside a [`Transaction`](crate::Transaction) the hooks'
//! broadcasts are held until COMMIT. The glue does nothing at all for an entity that no
//! hook watches.

use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, Iterable, ModelTrait, PrimaryKeyToColumn, QueryFilter, TryIntoModel,
};

use crate::error::Result;

use crate::hooks::{self, Saved};
use crate::later;
use crate::scope::Scope;
use crate::transaction;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// After an insert or update: runs the entity's `on_save` hooks, and queues its async
/// hooks (after COMMIT).
///
/// # Errors
///
/// Only with [`HookErrors::Propagate`](crate::HookErrors::Propagate): the hook's error as
/// `DbErr::Custom`.
pub async fn after_save<E, C>(model: E::Model, db: &C, insert: bool) -> Result<E::Model, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let saved = Saved { created: insert };
    if hooks::has_hooks::<E>() {
        in_transaction_of(db, || hooks::run_saved(&model, saved)).map_err(to_db_err)?;
    }
    if later::has_hooks::<E>() {
        later::queue(&model, later::Event::Saved(saved), Some(db)).map_err(to_db_err)?;
    }
    Ok(model)
}

/// Before a delete: when the `ActiveModel` holds only the key (e.g. built with just
/// `id: Set(7)`), loads the row so that `on_delete` hooks get the deleted row's data.
/// Costs one `SELECT`, and only then.
///
/// # Errors
///
/// The database error of that `SELECT`.
pub async fn before_delete<A, C>(active: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + TryIntoModel<ModelOf<A>>,
    ModelOf<A>: IntoActiveModel<A>,
    C: ConnectionTrait,
{
    let watched = hooks::has_hooks::<A::Entity>() || later::has_hooks::<A::Entity>();
    if !watched || active.clone().try_into_model().is_ok() {
        return Ok(active);
    }
    let mut query = A::Entity::find();
    for key in <A::Entity as EntityTrait>::PrimaryKey::iter() {
        let column = key.into_column();
        match active.get(column) {
            ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                query = query.filter(column.eq(value));
            }
            ActiveValue::NotSet => return Ok(active),
        }
    }
    Ok(match query.one(db).await? {
        Some(row) => row.into_active_model(),
        None => active,
    })
}

/// After a delete: runs the entity's `on_delete` hooks with the deleted row, and queues
/// its async hooks (after COMMIT).
///
/// # Errors
///
/// As [`after_save`].
pub async fn after_delete<A, C>(active: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + TryIntoModel<ModelOf<A>>,
    C: ConnectionTrait,
{
    if !hooks::has_hooks::<A::Entity>() && !later::has_hooks::<A::Entity>() {
        return Ok(active);
    }
    match active.clone().try_into_model() {
        Ok(model) => {
            in_transaction_of(db, || hooks::run_deleted(&model)).map_err(to_db_err)?;
            later::queue(&model, later::Event::Deleted, Some(db)).map_err(to_db_err)?;
        }
        Err(error) => tracing::warn!(
            entity = std::any::type_name::<A::Entity>(),
            %error,
            "deleted row's data is not available (no such row?); on_delete hooks skipped"
        ),
    }
    Ok(active)
}

/// Runs every `on_save` hook of the row's entity, and queues its
/// [async hooks](crate::AsyncHook), as the glue does after a save.
///
/// Call it after bulk operations, which run no hooks (see [`hooks`](crate::hooks)).
///
/// # Errors
///
/// With [`HookErrors::Propagate`](crate::HookErrors::Propagate), the first hook error; otherwise errors are logged and
/// this returns `Ok`.
pub fn saved<M>(model: &M, saved: Saved) -> Result<()>
where
    M: ModelTrait + 'static,
{
    let now = hooks::run_saved(model, saved);
    let later = later::queue(
        model,
        later::Event::Saved(saved),
        None::<&sea_orm::DatabaseConnection>,
    );
    now.and(later)
}

/// Runs every `on_delete` hook of the row's entity, and queues its async hooks, as the
/// glue does after a delete.
///
/// # Errors
///
/// As [`saved`].
pub fn deleted<M>(model: &M) -> Result<()>
where
    M: ModelTrait + 'static,
{
    let now = hooks::run_deleted(model);
    let later = later::queue(
        model,
        later::Event::Deleted,
        None::<&sea_orm::DatabaseConnection>,
    );
    now.and(later)
}

/// Runs `hooks` with their broadcasts held by `db`'s transaction, if it is a
/// [`Transaction`](crate::Transaction).
fn in_transaction_of<C: ConnectionTrait, R>(db: &C, hooks: impl FnOnce() -> R) -> R {
    match transaction::held_by(db) {
        Some(held) => Scope {
            transaction: Some(held),
            ..Scope::current()
        }
        .run_sync(hooks),
        None => {
            if Scope::current().transaction.is_none() {
                transaction::warn_if_plain_transaction::<C>();
            }
            hooks()
        }
    }
}

fn to_db_err(error: crate::error::Error) -> DbErr {
    DbErr::Custom(error.to_string())
}

/// Pins an async block's output type, so that `?` inside a user's hook body wrapped by
/// `#[turbo_model::active_model_behavior]` infers as it did in the original function.
pub fn typed<T, F: Future<Output = T>>(future: F) -> F {
    future
}
