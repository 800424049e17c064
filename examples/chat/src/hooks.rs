//! The one hook of the chat: a message saved in a room is appended to every open page of
//! that room; a deleted message is removed from them. The page that sent the form gets
//! the change in its HTTP response, so the broadcasts leave it out (`to_others`).

use turbo_model::{Hook, Saved, context};

use crate::entities::message;

/// Broadcasts messages to their room's stream.
pub struct MessageStream;

impl Hook for MessageStream {
    type Entity = message::Entity;

    fn on_save(&self, message: &message::Model, saved: Saved) -> turbo_model::Result<()> {
        if saved.created {
            message
                .parent_stream()
                .append("chat/components/message.html", context! { message })
                .target("messages")
                .to_others()
                .send()?;
        }
        Ok(())
    }

    fn on_delete(&self, message: &message::Model) -> turbo_model::Result<()> {
        message
            .parent_stream()
            .remove()
            .target(format!("message-{}", message.id))
            .to_others()
            .send()
    }
}

turbo_model::register!(MessageStream);
