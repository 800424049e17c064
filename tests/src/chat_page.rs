//! Steps on the chat's pages that browser tests share: sending a message, finding one,
//! and where screenshots go.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{BrowserError, Page};

/// The longest any single step may take: a broadcast, a page load, a form submission.
pub const STEP: Duration = Duration::from_secs(10);
/// A whole browser test, browsers included.
pub const WHOLE_TEST: Duration = Duration::from_secs(60);

/// The subscription element once all of its streams are subscribed.
pub const SUBSCRIBED: &str = "turbo-model-stream-source[connected]";
/// The texts of the messages in the list.
pub const MESSAGE_TEXTS: &str = "#messages li .text";
/// The message form's text input.
pub const MESSAGE_INPUT: &str = "#message-form input[name=text]";

/// Types `text` into the send form, submits it, and waits for the input to clear.
pub async fn send(page: &Page, text: &str) -> Result<(), BrowserError> {
    page.fill(MESSAGE_INPUT, text).await?;
    page.click("#message-form button[type=submit]").await?;
    page.wait_until(
        "the message input to clear after sending",
        "const input = document.querySelector(arguments[0]);
         return input !== null && input.value === ''",
        vec![json!(MESSAGE_INPUT)],
        STEP,
    )
    .await
}

/// Submits the room form (its fields already filled) and waits for the new room's page.
pub async fn create_room_with_form(page: &Page) -> Result<(), BrowserError> {
    page.click("#room-form button[type=submit]").await?;
    page.wait_until(
        "the new room's page after the room form",
        r"return /^\/rooms\/\d+\/$/.test(location.pathname)
                  && document.querySelector('#message-form') !== null",
        vec![],
        STEP,
    )
    .await
}

/// `window.__marker`, which a full page load would lose.
pub async fn marker(page: &Page) -> Result<Value, BrowserError> {
    page.execute("return window.__marker ?? null", vec![]).await
}

/// The id of the `#messages li` whose text is `text`.
pub async fn item_with_text(page: &Page, text: &str) -> Result<String, BrowserError> {
    let id = page
        .execute(
            "const item = Array.from(document.querySelectorAll('#messages li'))
                 .find(item => item.querySelector('.text')?.textContent === arguments[0]);
             return item ? item.id : null",
            vec![json!(text)],
        )
        .await?;
    match id {
        Value::String(id) if id.starts_with("message_") => Ok(id),
        other => panic!(
            "no `#messages li` with an id `message_…` holds {text:?} (got {other}):\n{}",
            page.snapshot().await
        ),
    }
}

/// `target/browser/NAME` in the workspace, where a person can look at it.
pub fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/browser")
        .join(name)
}

/// Cuts the page's network: its socket closes (code 4001) and every reconnect attempt
/// fails, until [`back_online`].
pub async fn go_offline(page: &Page) -> Result<(), BrowserError> {
    page.execute(
        "window.__offline = true;
         const Real = window.WebSocket;
         window.WebSocket = class extends Real {
             constructor(url, protocols) {
                 super(window.__offline ? url.replace('/turbo-model/ws', '/turbo-model/offline') : url, protocols);
             }
         };
         document.querySelector('turbo-model-stream-source').connection.socket.close(4001, 'cut');",
        vec![],
    )
    .await
    .map(|_| ())
}

/// Restores the network [`go_offline`] cut: the next reconnect attempt succeeds.
pub async fn back_online(page: &Page) -> Result<(), BrowserError> {
    page.execute("window.__offline = false", vec![])
        .await
        .map(|_| ())
}
