//! Who is using the chat: a user name chosen in a form and kept in a cookie (no
//! passwords: this shows per-subscription authorization, not authentication), and the
//! authorization of stream subscriptions to private rooms.

use std::sync::Arc;

use axum::extract::Form;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::Deserialize;
use turbo_model::StreamName;

use crate::entities::{author, room};

/// The cookie holding the user name.
pub const COOKIE: &str = "chat_user";

/// The signed-in user name, from the request's cookies.
pub fn user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|name| valid_name(name))
}

/// User names are 1 to 32 letters, digits, `-` or `_`: safe in a cookie as they are.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct SignIn {
    name: String,
}

/// `POST /session`: sets the user name cookie (empty name: signs out), and makes sure
/// the author of that name exists.
pub(crate) async fn sign_in(db: &DatabaseConnection, Form(form): Form<SignIn>) -> Response {
    let name = form.name.trim();
    if name.is_empty() {
        let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly");
        return ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response();
    }
    if !valid_name(name) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "a user name is 1 to 32 letters, digits, - or _",
        )
            .into_response();
    }
    if let Err(error) = author::named(db, name).await {
        tracing::error!(%error, "cannot record the author");
        return (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response();
    }
    let cookie = format!("{COOKIE}={name}; Path=/; SameSite=Lax; HttpOnly");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// Who each room is private to, as the subscription rule reads it: a room's privacy never
/// changes in this chat (no route edits or deletes rooms), so it is read from the
/// database once per room, not once per subscription (a page load, a reconnect storm
/// after a deploy). Bounded: past [`RoomAccess::ROOMS`] rooms it starts afresh.
#[derive(Clone, Debug, Default)]
pub struct RoomAccess {
    rooms: Arc<std::sync::Mutex<std::collections::HashMap<i32, Option<String>>>>,
}

impl RoomAccess {
    /// Rooms remembered at most.
    pub const ROOMS: usize = 100_000;

    fn get(&self, id: i32) -> Option<Option<String>> {
        self.rooms.lock().ok()?.get(&id).cloned()
    }

    fn remember(&self, id: i32, private_to: Option<String>) {
        if let Ok(mut rooms) = self.rooms.lock() {
            if rooms.len() >= Self::ROOMS {
                rooms.clear();
            }
            rooms.insert(id, private_to);
        }
    }
}

/// The rule for stream subscriptions: a private room's stream (`room:{id}`) only for
/// the user it is private to. Other streams are public. The database (and the
/// [`RoomAccess`] memo) come from the request's extensions, where the chat's router puts
/// them.
pub async fn authorize(request: Arc<Parts>, stream: StreamName) -> Result<(), String> {
    let Some(id) = stream
        .as_str()
        .strip_prefix("room:")
        .and_then(|id| id.parse::<i32>().ok())
    else {
        return Ok(());
    };
    let access = request.extensions.get::<RoomAccess>();
    let private_to = match access.and_then(|access| access.get(id)) {
        Some(private_to) => private_to,
        None => {
            let db = request
                .extensions
                .get::<DatabaseConnection>()
                .ok_or("the chat's database is not available")?;
            let room = room::Entity::find_by_id(id)
                .one(db)
                .await
                .map_err(|error| {
                    tracing::error!(%error, "authorization query failed");
                    "the room could not be checked".to_owned()
                })?
                .ok_or_else(|| format!("there is no room {id}"))?;
            if let Some(access) = access {
                access.remember(id, room.private_to.clone());
            }
            room.private_to
        }
    };
    let user = user(&request.headers);
    match private_to {
        Some(owner) if user.as_deref() != Some(owner.as_str()) => {
            Err(format!("room {id} is private"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_user_comes_from_the_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(user(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; chat_user=alice; x=1"),
        );
        assert_eq!(user(&headers).as_deref(), Some("alice"));
        headers.insert(header::COOKIE, HeaderValue::from_static("chat_user=a;b"));
        assert_eq!(user(&headers).as_deref(), Some("a"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("chat_user=<script>"),
        );
        assert_eq!(user(&headers), None, "invalid names are ignored");
    }
}
