//! The one hook of the chat: a message saved in a room is appended to every open page of
//! that room; a deleted message is removed from them.

use turbo_model::{ModelStream, Saved, context};

use crate::entities::message;

/// Broadcasts messages to their room's stream.
pub struct MessageStream;

impl ModelStream for MessageStream {
    type Entity = message::Entity;

    fn on_save(&self, message: &message::Model, saved: Saved) -> turbo_model::Result<()> {
        if saved.created {
            message
                .parent_stream()
                .append("chat/components/message.html", context! { message })
                .target("messages")
                .send()?;
        }
        Ok(())
    }

    fn on_delete(&self, message: &message::Model) -> turbo_model::Result<()> {
        message
            .parent_stream()
            .remove()
            .target(format!("message-{}", message.id))
            .send()
    }
}

turbo_model::register!(MessageStream);
