//! The chat's pages and forms.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, ModelTrait, QueryFilter,
    QueryOrder, Set,
};
use serde::Deserialize;
use turbo_model::{Turbo, context};

use crate::entities::{message, room};

/// Longest room name accepted, in characters.
const MAX_NAME: usize = 100;
/// Longest message accepted, in characters.
const MAX_TEXT: usize = 2000;

#[derive(Clone)]
struct App {
    db: DatabaseConnection,
    turbo: Turbo,
    turbo_js: Arc<TurboJs>,
}

/// Where the page loads Turbo from.
enum TurboJs {
    /// The npm copy, served by the app at `/static/turbo.js`.
    Local(String),
    /// The npm copy is missing: the pinned CDN URL.
    Cdn,
}

impl TurboJs {
    fn load() -> Self {
        let path = crate::turbo_js_path();
        match std::fs::read_to_string(&path) {
            Ok(js) => Self::Local(js),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    cdn = crate::TURBO_CDN_URL,
                    "Turbo from npm is missing (run `npm ci` in examples/chat); pages load it from the CDN"
                );
                Self::Cdn
            }
        }
    }

    fn url(&self) -> &'static str {
        match self {
            Self::Local(_) => "/static/turbo.js",
            Self::Cdn => crate::TURBO_CDN_URL,
        }
    }
}

/// All of the chat's routes, with turbo-model's endpoint merged in.
pub fn router(db: DatabaseConnection, turbo: &Turbo) -> Router {
    let app = App {
        db,
        turbo: turbo.clone(),
        turbo_js: Arc::new(TurboJs::load()),
    };
    Router::new()
        .route("/", get(index))
        .route("/rooms/", post(create_room))
        .route("/rooms/{id}/", get(show_room))
        .route("/rooms/{id}/messages/", post(create_message))
        .route(
            "/rooms/{id}/messages/{message_id}/delete",
            post(delete_message),
        )
        .route("/static/turbo.js", get(turbo_js))
        .with_state(app)
        // Forms posted from other sites' pages are refused (cross-site request forgery).
        .layer(axum::middleware::from_fn(turbo_model::web::reject_cross_site))
        .merge(turbo.router())
}

/// A failed request: a status and a message for the person who sent it.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(error: sea_orm::DbErr) -> Self {
        tracing::error!(%error, "database error");
        Self(StatusCode::INTERNAL_SERVER_ERROR, "database error".into())
    }
}

impl From<turbo_model::Error> for Failure {
    fn from(error: turbo_model::Error) -> Self {
        tracing::error!(%error, "render error");
        Self(StatusCode::INTERNAL_SERVER_ERROR, "template error".into())
    }
}

type Page = Result<Response, Failure>;

fn render(app: &App, template: &str, mut context: turbo_model::Context) -> Page {
    context.insert("turbo_js", app.turbo_js.url());
    Ok(Html(app.turbo.render(template, &context)?).into_response())
}

async fn index(State(app): State<App>) -> Page {
    let rooms = room::Entity::find()
        .order_by_asc(room::Column::Id)
        .all(&app.db)
        .await?;
    render(&app, "chat/index.html", context! { rooms })
}

#[derive(Deserialize)]
struct NewRoom {
    name: String,
}

/// Trims `value` and checks it is not empty and not longer than `max` characters.
fn field(value: &str, what: &str, max: usize) -> Result<String, Failure> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the {what} is empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the {what} is longer than {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

async fn create_room(State(app): State<App>, Form(form): Form<NewRoom>) -> Page {
    let name = field(&form.name, "room name", MAX_NAME)?;
    let room = room::ActiveModel {
        name: Set(name),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    Ok(Redirect::to(&format!("/rooms/{}/", room.id)).into_response())
}

async fn find_room(app: &App, id: i32) -> Result<room::Model, Failure> {
    room::Entity::find_by_id(id)
        .one(&app.db)
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no room {id}")))
}

async fn show_room(State(app): State<App>, Path(id): Path<i32>) -> Page {
    let room = find_room(&app, id).await?;
    let messages = room
        .find_related(message::Entity)
        .order_by_asc(message::Column::Id)
        .all(&app.db)
        .await?;
    render(&app, "chat/room.html", context! { room, messages })
}

#[derive(Deserialize)]
struct NewMessage {
    text: String,
}

async fn create_message(
    State(app): State<App>,
    Path(id): Path<i32>,
    Form(form): Form<NewMessage>,
) -> Page {
    let room = find_room(&app, id).await?;
    let text = field(&form.text, "message", MAX_TEXT)?;
    message::ActiveModel {
        room_id: Set(room.id),
        text: Set(text),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    Ok(Redirect::to(&format!("/rooms/{}/", room.id)).into_response())
}

async fn delete_message(State(app): State<App>, Path((id, message_id)): Path<(i32, i32)>) -> Page {
    let message = message::Entity::find_by_id(message_id)
        .filter(message::Column::RoomId.eq(id))
        .one(&app.db)
        .await?
        .ok_or_else(|| {
            Failure(
                StatusCode::NOT_FOUND,
                format!("no message {message_id} in room {id}"),
            )
        })?;
    message.delete(&app.db).await?;
    Ok(Redirect::to(&format!("/rooms/{id}/")).into_response())
}

async fn turbo_js(State(app): State<App>) -> Response {
    match &*app.turbo_js {
        TurboJs::Local(js) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            js.clone(),
        )
            .into_response(),
        TurboJs::Cdn => Redirect::temporary(crate::TURBO_CDN_URL).into_response(),
    }
}
