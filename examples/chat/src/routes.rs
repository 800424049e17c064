//! The chat's pages and forms.
//!
//! Forms work with JavaScript off (they redirect). Submitted by Turbo, the message forms
//! answer with a Turbo Stream response instead: the sender's page gets the change in the
//! response, and the other pages get it from the hooks' broadcasts, which leave the
//! sender out (`to_others`), so nobody sees it twice.

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, ModelTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::Deserialize;
use turbo_model::response::{AcceptsTurboStream, TurboStream, turbo_stream};
use turbo_model::{Turbo, context};

use crate::assets::TurboScript;
use crate::entities::{author, message, room};
use crate::hooks::{MESSAGE, author_of};
use crate::session;

/// Longest room name accepted, in characters.
const MAX_NAME: usize = 100;
/// Longest message accepted, in characters.
const MAX_TEXT: usize = 2000;

#[derive(Clone)]
struct App {
    db: DatabaseConnection,
    turbo: Turbo,
    script: TurboScript,
}

/// All of the chat's routes, with turbo-model's endpoints merged in.
pub fn router(db: DatabaseConnection, turbo: &Turbo) -> Router {
    let script = TurboScript::load();
    let app = App {
        db: db.clone(),
        turbo: turbo.clone(),
        script: script.clone(),
    };
    Router::new()
        .route("/", get(index))
        .route("/session", post(sign_in))
        .route("/rooms/", post(create_room))
        .route("/rooms/{id}/", get(show_room))
        .route("/rooms/{id}/messages/", post(create_message))
        .route("/rooms/{id}/messages/{message_id}/edit", post(edit_message))
        .route(
            "/rooms/{id}/messages/{message_id}/delete",
            post(delete_message),
        )
        .with_state(app)
        // Broadcasts made while handling a request know its sender (`to_others`, and
        // the request id that keeps the sender's page from refreshing itself).
        .layer(axum::middleware::from_fn_with_state(
            turbo.clone(),
            turbo_model::response::request_scope,
        ))
        // Forms posted from other sites' pages are refused (cross-site request forgery).
        .layer(axum::middleware::from_fn(
            turbo_model::web::reject_cross_site,
        ))
        .merge(script.router())
        .merge(turbo.router())
        // The stream authorization reads the database from the request, and remembers
        // who each room is private to.
        .layer(axum::Extension(db))
        .layer(axum::Extension(session::RoomAccess::default()))
        .layer(axum::middleware::map_response(security_headers))
}

/// What every response says to the browser: do not guess content types, and run only
/// the scripts this server (or the pinned Turbo CDN) serves. Styles may be inline (the
/// pages have one `<style>`); no script is.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
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

fn render(
    app: &App,
    headers: &HeaderMap,
    template: &str,
    mut context: turbo_model::Context,
) -> Page {
    context.insert("turbo_js", app.script.url());
    context.insert("user", &session::user(headers));
    Ok(Html(app.turbo.render(template, &context)?).into_response())
}

/// A room on the room list, with its message count.
#[derive(serde::Serialize)]
struct ListedRoom {
    room: room::Model,
    messages: i64,
}

async fn index(State(app): State<App>, headers: HeaderMap) -> Page {
    let rooms = room::Entity::find()
        .order_by_asc(room::Column::Id)
        .all(&app.db)
        .await?;
    let counts: std::collections::HashMap<i32, i64> = message::Entity::find()
        .select_only()
        .column(message::Column::RoomId)
        .column_as(message::Column::Id.count(), "messages")
        .group_by(message::Column::RoomId)
        .into_tuple::<(i32, i64)>()
        .all(&app.db)
        .await?
        .into_iter()
        .collect();
    let rooms: Vec<ListedRoom> = rooms
        .into_iter()
        .map(|room| ListedRoom {
            messages: counts.get(&room.id).copied().unwrap_or_default(),
            room,
        })
        .collect();
    render(&app, &headers, "chat/index.html", context! { rooms })
}

/// `POST /session`: signs in as the author of that name (created on first use).
async fn sign_in(State(app): State<App>, form: Form<session::SignIn>) -> Response {
    session::sign_in(&app.db, form).await
}

#[derive(Deserialize)]
struct NewRoom {
    name: String,
    #[serde(default)]
    private_to: String,
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
    let private_to = match form.private_to.trim() {
        "" => None,
        user if session::valid_name(user) => Some(user.to_owned()),
        _ => {
            return Err(Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a user name is 1 to 32 letters, digits, - or _".into(),
            ));
        }
    };
    let room = room::ActiveModel {
        name: Set(name),
        private_to: Set(private_to),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    Ok(Redirect::to(&format!("/rooms/{}/", room.id)).into_response())
}

/// The room, if it exists and the request's user may see it.
async fn find_room(app: &App, headers: &HeaderMap, id: i32) -> Result<room::Model, Failure> {
    let room = room::Entity::find_by_id(id)
        .one(&app.db)
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no room {id}")))?;
    if !room.admits(session::user(headers).as_deref()) {
        return Err(Failure(
            StatusCode::FORBIDDEN,
            format!("room {id} is private"),
        ));
    }
    Ok(room)
}

/// A message on its room's page, with its author.
#[derive(serde::Serialize)]
struct ShownMessage {
    message: message::Model,
    author: Option<author::Model>,
}

async fn show_room(State(app): State<App>, headers: HeaderMap, Path(id): Path<i32>) -> Page {
    let room = find_room(&app, &headers, id).await?;
    let messages: Vec<_> = room
        .find_related(message::Entity)
        .find_also_related(author::Entity)
        .order_by_asc(message::Column::Id)
        .all(&app.db)
        .await?
        .into_iter()
        .map(|(message, author)| ShownMessage { message, author })
        .collect();
    render(
        &app,
        &headers,
        "chat/room.html",
        context! { room, messages },
    )
}

#[derive(Deserialize)]
struct NewMessage {
    text: String,
}

async fn create_message(
    State(app): State<App>,
    headers: HeaderMap,
    AcceptsTurboStream(turbo_stream_response): AcceptsTurboStream,
    Path(id): Path<i32>,
    Form(form): Form<NewMessage>,
) -> Page {
    let room = find_room(&app, &headers, id).await?;
    let text = field(&form.text, "message", MAX_TEXT)?;
    let author = match session::user(&headers) {
        Some(name) => Some(author::named(&app.db, &name).await?),
        None => None,
    };
    let message = message::ActiveModel {
        room_id: Set(room.id),
        text: Set(text),
        author_id: Set(author.as_ref().map(|a| a.id)),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    if turbo_stream_response {
        // The sender's page: the new message, and a fresh (empty) form.
        return Ok(TurboStream::from([
            turbo_stream::append(MESSAGE, context! { message, author }).target("messages"),
            turbo_stream::replace("chat/components/form.html", context! { room })
                .target("message-form"),
        ])
        .with_turbo(&app.turbo)
        .into_response());
    }
    Ok(Redirect::to(&format!("/rooms/{}/", room.id)).into_response())
}

/// The message, if it is in the room and the request's user may see the room.
async fn find_message(
    app: &App,
    headers: &HeaderMap,
    id: i32,
    message_id: i32,
) -> Result<message::Model, Failure> {
    let room = find_room(app, headers, id).await?;
    message::Entity::find_by_id(message_id)
        .filter(message::Column::RoomId.eq(room.id))
        .one(&app.db)
        .await?
        .ok_or_else(|| {
            Failure(
                StatusCode::NOT_FOUND,
                format!("no message {message_id} in room {id}"),
            )
        })
}

async fn edit_message(
    State(app): State<App>,
    headers: HeaderMap,
    AcceptsTurboStream(turbo_stream_response): AcceptsTurboStream,
    Path((id, message_id)): Path<(i32, i32)>,
    Form(form): Form<NewMessage>,
) -> Page {
    let message = find_message(&app, &headers, id, message_id).await?;
    let text = field(&form.text, "message", MAX_TEXT)?;
    let mut edited: message::ActiveModel = message.into();
    edited.text = Set(text);
    let message = edited.update(&app.db).await?;
    if turbo_stream_response {
        let author = author_of(&app.db, &message).await?;
        let target = message.dom_id();
        return Ok(TurboStream::from([turbo_stream::replace(
            MESSAGE,
            context! { message, author },
        )
        .target(target)])
        .with_turbo(&app.turbo)
        .into_response());
    }
    Ok(Redirect::to(&format!("/rooms/{id}/")).into_response())
}

async fn delete_message(
    State(app): State<App>,
    headers: HeaderMap,
    AcceptsTurboStream(turbo_stream_response): AcceptsTurboStream,
    Path((id, message_id)): Path<(i32, i32)>,
) -> Page {
    let message = find_message(&app, &headers, id, message_id).await?;
    let target = message.dom_id();
    message.delete(&app.db).await?;
    if turbo_stream_response {
        return Ok(TurboStream::from([turbo_stream::remove().target(target)])
            .with_turbo(&app.turbo)
            .into_response());
    }
    Ok(Redirect::to(&format!("/rooms/{id}/")).into_response())
}
