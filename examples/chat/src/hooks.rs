//! The chat's broadcasts. They need the database (the author's name, a room's message
//! count), so they are async hooks: they run after the write commits, in the
//! background, and what they send keeps the order of the writes.
//!
//! - A message posted in a room is appended to every open page of that room, with its
//!   author's name; an edited one is replaced there, a deleted one removed. The page
//!   that sent the form gets the change in its HTTP response, so these leave it out
//!   (`to_others`).
//! - The room list (the `room` stream) shows each room's message count: it is updated
//!   in every open room list when a message is posted or deleted.
//!
//! One hook sends all of a message's own broadcasts, so that a delete can never overtake
//! the append of the same message.

use sea_orm::{ColumnTrait, EntityTrait, ModelTrait, PaginatorTrait, QueryFilter};
use turbo_model::{Action, AsyncHook, Content, HookContext, Saved, context};

use crate::entities::{author, message, room};

/// The message component, as the room page and the form responses render it.
pub const MESSAGE: &str = "chat/components/message.html";

/// The author of `message`, if it has one.
///
/// # Errors
///
/// The database error.
pub async fn author_of<C: sea_orm::ConnectionTrait>(
    db: &C,
    message: &message::Model,
) -> Result<Option<author::Model>, sea_orm::DbErr> {
    match message.author_id {
        Some(_) => message.find_related(author::Entity).one(db).await,
        None => Ok(None),
    }
}

/// Appends, replaces and removes messages on their room's pages.
pub struct MessageBroadcasts;

impl AsyncHook for MessageBroadcasts {
    type Entity = message::Entity;

    async fn on_save(
        &self,
        cx: &HookContext,
        message: &message::Model,
        saved: Saved,
    ) -> turbo_model::Result<()> {
        let author = author_of(cx.db()?, message).await?;
        let room = message.parent_stream();
        let rendered = context! { message, author };
        let broadcast = if saved.created {
            room.append(MESSAGE, rendered).target("messages")
        } else {
            room.replace(MESSAGE, rendered).target(message.dom_id())
        };
        broadcast.to_others().send()
    }

    async fn on_delete(
        &self,
        _: &HookContext,
        message: &message::Model,
    ) -> turbo_model::Result<()> {
        message
            .parent_stream()
            .remove()
            .target(message.dom_id())
            .to_others()
            .send()
    }
}

turbo_model::register_async!(MessageBroadcasts);

/// Keeps the message counts of the room list up to date.
pub struct RoomCounts;

impl RoomCounts {
    /// Counts the room's messages now (after the write committed) and shows the count
    /// in `#room_{id} .count` on every open room list.
    async fn update(cx: &HookContext, room_id: i32) -> turbo_model::Result<()> {
        let count = message::Entity::find()
            .filter(message::Column::RoomId.eq(room_id))
            .count(cx.db()?)
            .await?;
        let room = room::Entity::stream_of(room_id);
        turbo_model::stream("room")?
            .action(Action::Update, Some(Content::text(&count.to_string())))
            .targets(format!("#{} .count", room.name().dom_id()))
            .send()
    }
}

impl AsyncHook for RoomCounts {
    type Entity = message::Entity;

    async fn on_save(
        &self,
        cx: &HookContext,
        message: &message::Model,
        saved: Saved,
    ) -> turbo_model::Result<()> {
        if saved.created {
            Self::update(cx, message.room_id).await?;
        }
        Ok(())
    }

    async fn on_delete(
        &self,
        cx: &HookContext,
        message: &message::Model,
    ) -> turbo_model::Result<()> {
        Self::update(cx, message.room_id).await
    }
}

turbo_model::register_async!(RoomCounts);
