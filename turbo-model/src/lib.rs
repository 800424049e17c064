//! # turbo-model
//!
//! Live pages for [SeaORM] applications, the way turbo-rails and turbo-django do it:
//! when a row is saved or deleted, a hook renders a [Tera] template and pushes a
//! [Turbo Stream] action to every browser subscribed to the row's stream or its parent's.
//! The application writes a derive, a hook and one template tag; no JavaScript.
//!
//! ```text
//! ActiveModel insert/update/save/delete      (SeaORM)
//!   → ActiveModelBehavior glue               (#[derive(ModelStream)])
//!   → your hooks for that entity             (Hook, register!)
//!   → Broadcast: stream + action + target + content, rendered once
//!   → Backend → Hub: sequence number, one shared frame for all subscribers
//!   → each connection's bounded queue → WebSocket or Server-Sent Events (axum)
//!   → <turbo-model-stream-source> → Turbo.connectStreamSource → DOM
//! ```
//!
//! ## A complete example
//!
//! A chat message appears in every open window of its room. The entity derives
//! [`ModelStream`](derive@ModelStream) and names its parent stream on the foreign key:
//!
//! ```
//! mod message {
//!     use sea_orm::entity::prelude::*;
//!
//!     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
//!     #[sea_orm(table_name = "message")]
//!     pub struct Model {
//!         #[sea_orm(primary_key)]
//!         pub id: i32,
//!         #[stream(parent = super::room::Entity)] // room's stream, without a query
//!         pub room_id: i32,
//!         pub text: String,
//!     }
//!
//!     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//!     pub enum Relation {}
//! }
//! # mod room {
//! #     use sea_orm::entity::prelude::*;
//! #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
//! #     #[sea_orm(table_name = "room")]
//! #     pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
//! #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//! #     pub enum Relation {}
//! # }
//!
//! // The hook: runs after every ActiveModel insert/update/save/delete of a message.
//! use turbo_model::{Hook, Saved, context};
//!
//! struct MessageStream;
//!
//! impl Hook for MessageStream {
//!     type Entity = message::Entity;
//!
//!     fn on_save(&self, message: &message::Model, saved: Saved) -> turbo_model::Result<()> {
//!         if saved.created {
//!             message
//!                 .parent_stream()
//!                 .append("chat/components/message.html", context! { message })
//!                 .target("messages")
//!                 .send()?;
//!         }
//!         Ok(())
//!     }
//!
//!     fn on_delete(&self, message: &message::Model) -> turbo_model::Result<()> {
//!         message
//!             .parent_stream()
//!             .remove()
//!             .target(message.dom_id())
//!             .send()
//!     }
//! }
//!
//! turbo_model::register!(MessageStream);
//!
//! # fn main() {
//! let m = message::Model { id: 3, room_id: 1, text: "hi".into() };
//! assert_eq!(m.stream().name().as_str(), "message:3");
//! assert_eq!(m.parent_stream().name().as_str(), "room:1");
//! assert_eq!(message::Entity::stream_of(3).name().as_str(), "message:3");
//! # }
//! ```
//!
//! The room page subscribes with one tag (`{% turbo_subscribe room %}` works too):
//!
//! ```html
//! <% turbo_subscribe room %>
//! <ul id="messages">{% for message in messages %}{% include "chat/components/message.html" %}{% endfor %}</ul>
//! ```
//!
//! At start-up, build and install the [`Turbo`], merge its router (the WebSocket
//! endpoint and the client script) into the application's, and serve:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let turbo = turbo_model::Turbo::builder()
//!     .templates(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"))
//!     .install()?;
//! let app: axum::Router = axum::Router::new().merge(turbo.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! turbo.serve(listener, app, std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
//!
//! [`Turbo::serve`] is `axum::serve` with a graceful shutdown for live pages and
//! turbo-model's [`web::Listener`], through which the hub writes each broadcast straight
//! to every socket that has room, without waking the connection's task. Plain
//! `axum::serve` on a `TcpListener` works too; each connection's task then writes its
//! own socket, at a higher cost per delivery.
//!
//! The page must load Turbo 8 (`@hotwired/turbo` from npm, served by the app).
//!
//! ## Streams outside the ORM
//!
//! A domain-event handler or a background job addresses a stream by name with
//! [`stream`] (which checks the name); the page subscribes with
//! `<% turbo_subscribe "orders:42" %>`.
//!
//! ```no_run
//! use turbo_model::{context, stream};
//! # fn f() -> turbo_model::Result<()> {
//! stream("orders:42")?
//!     .replace("orders/status.html", context! { status => "shipped" })
//!     .target("order-42-status")
//!     .send()?;
//! # Ok(()) }
//! ```
//!
//! ## Actions
//!
//! All eight Turbo 8 actions: [`append`](Stream::append), [`prepend`](Stream::prepend),
//! [`replace`](Stream::replace), [`update`](Stream::update), [`remove`](Stream::remove),
//! [`before`](Stream::before), [`after`](Stream::after) and [`refresh`](Stream::refresh)
//! (with [`morph`](Broadcast::morph) and [`preserve_scroll`](Broadcast::preserve_scroll)),
//! addressed by [`target`](Broadcast::target) (an id) or [`targets`](Broadcast::targets)
//! (a CSS selector). Content is a template, a Tera component, or literal HTML
//! ([`Content`]). The same actions, without a stream ([`StreamAction`]), answer a form
//! in a [`TurboStream`](response::TurboStream) response.
//!
//! ## Templates
//!
//! [`Builder::templates`] loads a folder; templates are named by their path below it with
//! `/` separators (`chat/components/message.html`); names starting with `.` are skipped;
//! `.html`, `.htm` and `.xml` templates autoescape. Syntax errors fail the build of the
//! [`Turbo`], naming the template and the line.
//!
//! `<% turbo_subscribe room %>` (or the Django spelling `{% turbo_subscribe room %}`)
//! renders the subscription element for a model or a stream name; several arguments,
//! separated by spaces or commas, name one compound stream (`room "messages"` is
//! `room:3:messages`), and one list argument subscribes to each of its items:
//!
//! ```html
//! <turbo-model-stream-source id="turbo-model-3f2a…" data-turbo-permanent src="/turbo-model/ws" streams="cm9vbTox.…" since="t1733000000123456"></turbo-model-stream-source>
//! <script type="module" src="/turbo-model/client-1a2b3c4d.js"></script>
//! ```
//!
//! `since` is when the page's request began: when the page subscribes, the server
//! replays what was broadcast after it, so nothing is lost between reading the page's
//! data and its socket connecting. Rendering does no I/O. The client script's name
//! changes with its content, and browsers keep it for good.
//!
//! A string is a stream name. A model is recognised by the fields it serialized to: the
//! entity deriving `ModelStream` with exactly those fields or, when several fit, the one
//! whose table or module is named like the expression's last identifier (`room` in
//! `message.room`). When none fits, rendering fails with an error naming the template,
//! the line and the expression.
//!
//! ## Hooks
//!
//! See [`Hook`] for the trait and [`hooks`](mod@hooks) for when hooks run (not for
//! SeaORM's bulk operations), their order, and what a failing hook does (it is logged;
//! the database write is kept).
//!
//! ## The derive
//!
//! `#[derive(ModelStream)]` goes on the `Model` of a SeaORM entity (also one declared with
//! `#[sea_orm::model]`). It gives:
//!
//! - `model.stream()` and `Entity::stream_of(key)`: the row's own stream, `table:key`;
//! - `model.parent_stream()` for the field marked `#[stream(parent = path::Entity)]`
//!   (an `Option` when the field is an `Option`);
//! - the `ActiveModelBehavior` impl that runs the hooks. If the entity has its own impl,
//!   write `#[stream(custom_behavior)]` on the struct and put
//!   `#[turbo_model::active_model_behavior]` on that impl;
//! - `#[stream(prefix = "rooms")]` on the struct changes the stream prefix from the
//!   table name;
//! - declarative broadcasts, with no hook to write:
//!   `#[stream(broadcasts_to = parent, template = "chat/message.html", target = "messages")]`
//!   appends a created row to `#messages` on its parent's stream, replaces an updated
//!   one and removes a deleted one (by [`dom_id`], `message_12`); `inserts_by = prepend`
//!   prepends; `#[stream(broadcasts, template = "...")]` uses the entity's stream for
//!   creates and the row's own for the rest. See [`ModelStream`](derive@ModelStream).
//!
//! ## Turbo conventions
//!
//! - [`dom_id`] (`message_12`, `edit_message_12` with a prefix) names the element that
//!   shows a row; templates have the `dom_id` filter:
//!   `<li id="{{ message | dom_id }}">`, `{{ message | dom_id(prefix="edit") }}`.
//! - The arguments of one `turbo_subscribe` tag name one stream, joined by `:`:
//!   `<% turbo_subscribe room "messages" %>` subscribes to `room:3:messages`, which is
//!   `room.stream().join("messages")?` in Rust ([`Stream::join`]). One list argument
//!   subscribes to each of its items: `<% turbo_subscribe [room, "lobby"] %>`.
//!
//! ## After commit, or never
//!
//! Open transactions through [`Db`] (a drop-in wrapper of `DatabaseConnection`): the
//! broadcasts that hooks make inside a [`Transaction`] are published after COMMIT, in
//! order, and dropped on rollback, error, panic or drop; nested transactions keep or
//! drop their own. See [`Transaction`] for the details.
//!
//! ## Forms, the sender, and refreshes
//!
//! [`response::TurboStream`] answers a Turbo form with stream actions; the hook's
//! broadcast can leave the sender's page out with [`Broadcast::to_others`] when the
//! router has the [`response::request_scope`] layer, which also gives `refresh`
//! broadcasts Turbo's request id (the page that made the change does not refresh
//! itself) and makes the pages it renders subscribe from the time it began. Refreshes are debounced
//! per stream (500 ms); `#[stream(broadcasts_refreshes)]` sends them without a hook.
//! The client element holds a refresh while its page is submitting a form (Turbo would
//! otherwise start the refresh's visit and stop the submission) and applies it when
//! the submission is over; during a broadcast refresh, text fields the user has edited
//! keep what they hold instead of being morphed into the server's empty fields.
//!
//! ## Who may subscribe
//!
//! [`Builder::authorize`] decides each subscription from the request that opened the
//! connection (cookies, headers, extensions) and the stream name; a refusal
//! ([`web::Refusal`]) is told to the client. It runs beside the connection's traffic: a
//! slow authorizer delays only the subscription it decides. When what it decided on
//! changes, [`Turbo::reauthorize`] asks it again about live subscriptions
//! ([`web::Subscriptions`]: a stream, a connection, a user's requests, all); the ones it
//! now refuses end.
//!
//! ## Seeding, imports and tests
//!
//! [`suppress`] runs code without broadcasts. [`testing::capture`] records the
//! broadcasts made while a future runs, with assertions that show what was sent instead.
//! [`Turbo::scope`] runs code with a given `Turbo` instead of the installed one, so
//! tests can each build their own.
//!
//! ## Several server processes
//!
//! With the `redis` feature, `backend::Redis` (or `TURBO_MODEL_REDIS_URL`) carries
//! broadcasts to every process behind a load balancer, keeps the streams' history in
//! Redis so that a page whose connection lands on another process resumes where it was,
//! and turns a lost Redis, or a broadcast Redis could not take before its deadline, into
//! gap signals, never silent holes (see its `# Faults`). Without it, everything stays in
//! the process and nothing else needs to run. Connection identities carry their process,
//! so `to_others` skips the right page whichever process handles its request.
//!
//! Each process receives only the broadcasts of the streams its own clients watch
//! (interest routing, on a channel per stream), so N processes that serve different
//! rooms share the traffic instead of each receiving all of it. `Redis::cluster` (or
//! `TURBO_MODEL_REDIS_CLUSTER`) runs the same on a Redis Cluster, with sharded Pub/Sub:
//! a master that stops gives the streams of its slots the gap signal while the others go
//! on.
//!
//! ## Metrics
//!
//! [`Turbo::metrics`] reads the counters in code; [`Turbo::metrics_router`] serves them
//! to Prometheus (OpenMetrics text): connections, subscriptions, broadcasts, deliveries,
//! kicks and refusals by reason, history bytes, the async hooks' queue, and with Redis
//! the publish queue, publish latency, retries, losses and the traffic received. The
//! route is opt-in: merge it where only the scraper reaches it.
//!
//! ## Signed stream names
//!
//! The tag renders stream names signed with HMAC-SHA256 ([`signing::Signer`]); the
//! server refuses any subscription whose token it did not sign. Set `TURBO_MODEL_SECRET`
//! (32 bytes or more) in production; without it a random key is used and logged. Keys
//! rotate: previous ones still verify ([`Builder::previous_secrets`]); tokens may expire
//! ([`Builder::token_ttl`]); a page whose tokens are refused refreshes itself, with
//! backoff, for new ones.
//!
//! ## Delivery
//!
//! On each stream a page applies every broadcast in order, once, including those sent
//! while its connection was down or before it connected, as long as it comes back
//! within the stream's history (100 broadcasts, 5 minutes, [`Builder::history`]; 64 MiB
//! over all streams, [`Builder::history_bytes`]); beyond that it is told so and
//! refreshes itself. See [`hub`](mod@hub) for ordering, resume, cost (one render and one
//! encoding per broadcast, whatever the number of subscribers) and slow consumers, and
//! [`web`] for the endpoints (WebSocket and Server-Sent Events), their limits (queues,
//! write timeout, connections in all and per address), heartbeats, shutdown and memory
//! per connection. [`Turbo::serve`] serves an application with all of it: bounded
//! writes at the socket, the client's address for the per-address limit, and a shutdown
//! that ends within its bound whatever the clients do.
//!
//! ## How the crate is built
//!
//! The modules form layers along the path of a broadcast; each uses only those below
//! it, so the code reads from the bottom up:
//!
//! 1. names and data: `action` (actions, targets, content), `error`, `name` (stream
//!    names, connection ids), `clock`, `metrics`;
//! 2. ambient state (`scope`: the one place that knows what code runs inside: a
//!    request, a transaction, a capture, a suppression, a `Turbo`) and `signing`;
//! 3. rendering (`templates`: Tera, the tag; no I/O);
//! 4. the [`hub`] (positions, history, fan-out) and the [`backend`]s that feed it
//!    through a narrow [`hub::Feed`];
//! 5. the [`web`] endpoints and the wire protocol (every encoding);
//! 6. the [`Turbo`] handle and its [`Builder`];
//! 7. beside the top, calling down: sending (`dispatch`, `broadcast`), transactions,
//!    [`hooks`] and the ORM glue, [`response`]s, [`testing`].
//!
//! [SeaORM]: https://www.sea-ql.org/SeaORM/
//! [Tera]: https://keats.github.io/tera/
//! [Turbo Stream]: https://turbo.hotwired.dev/handbook/streams

#![cfg_attr(docsrs, feature(doc_cfg))]

mod action;
pub mod backend;
mod background;
mod broadcast;
mod builder;
mod clock;
mod declared;
mod dispatch;
mod error;
mod exposition;
mod glue;
pub mod hooks;
pub mod hub;
pub mod later;
pub mod metrics;
mod model;
pub mod name;
pub mod response;
mod scope;
pub mod signing;
mod templates;
pub mod testing;
mod transaction;
mod turbo;
pub mod web;

pub use action::{Action, Content, StreamAction, Target};
pub use broadcast::{Broadcast, Stream, stream};
pub use builder::Builder;
pub use error::{Error, Result};
pub use glue::{deleted, saved};
pub use hooks::{Hook, Saved};
pub use later::{AsyncHook, HookContext};
pub use model::{StreamEntity, StreamModel, dom_id};
pub use name::StreamName;
pub use scope::{is_suppressed, suppress, suppress_sync};
pub use tera::{Context, context};
pub use transaction::{Db, Transaction};
pub use turbo::{HookErrors, Turbo};
pub use turbo_model_derive::{ModelStream, active_model_behavior};

/// Registers a hook (a value of a type implementing [`Hook`]) for its entity.
///
/// Write it once, at module level, next to the hook. Hooks of one entity run in the
/// order of their names (`module::Type`).
///
/// ```
/// # mod message { use sea_orm::entity::prelude::*;
/// #   #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
/// #   #[sea_orm(table_name = "message")]
/// #   pub struct Model { #[sea_orm(primary_key)] pub id: i32 }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # }
/// struct MessageStream;
///
/// impl turbo_model::Hook for MessageStream {
///     type Entity = message::Entity;
/// }
///
/// turbo_model::register!(MessageStream);
/// ```
///
/// Registration uses [`inventory`](https://docs.rs/inventory): the linker drops a
/// registration in a library crate that the final binary never otherwise refers to.
/// Keep hooks in the application crate, or refer to the hook's module from it.
#[macro_export]
macro_rules! register {
    ($hook:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::__private::HookRegistration::new(
                &$hook,
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!($hook)),
            )
        }
    };
}

/// Registers an [`AsyncHook`] (a value of a type implementing it) for its entity: it
/// runs after COMMIT, in the background, with a database connection.
///
/// Async hooks of one entity are queued in the order of their names (`module::Type`).
/// The same linker caveat as [`register!`] applies.
#[macro_export]
macro_rules! register_async {
    ($hook:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::__private::AsyncHookRegistration::new(
                &$hook,
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!($hook)),
            )
        }
    };
}

/// What the macros expand to. Not public API: no stability promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::declared::Declared;
    pub use crate::glue::{after_delete, after_save, before_delete, typed};
    pub use crate::hooks::HookRegistration;
    pub use crate::later::AsyncHookRegistration;
    pub use crate::templates::models::EntityInfo;
    pub use inventory;
    pub use sea_orm;

    /// Implemented for an `ActiveModel` by `#[turbo_model::active_model_behavior]`, and
    /// required by `#[derive(ModelStream)]` with `#[stream(custom_behavior)]`: forgetting
    /// the attribute would otherwise silently run no hooks.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` has `#[stream(custom_behavior)]` but its `ActiveModelBehavior` impl runs no turbo-model hooks",
        label = "add `#[turbo_model::active_model_behavior]` above `impl ActiveModelBehavior for ActiveModel`"
    )]
    pub trait BehaviorInstalled {}

    /// Entry points for property tests and fuzz targets: the parsers that take input
    /// from outside the process.
    pub mod fuzz {
        /// Parses one inbound WebSocket text frame; `Err` holds the message the client
        /// would get.
        ///
        /// # Errors
        ///
        /// When the frame is not a valid request.
        pub fn parse_inbound(text: &str) -> Result<(), String> {
            crate::web::protocol::parse(text).map(|_| ())
        }

        /// Rewrites the `turbo_subscribe` tags of a template source; `Err` holds the line
        /// and the message.
        ///
        /// # Errors
        ///
        /// When a tag is malformed.
        pub fn rewrite_tags(source: &str) -> Result<String, (usize, String)> {
            crate::templates::rewrite_tags(source)
        }

        /// The Server-Sent Events record of a broadcast of `html` at position
        /// `00000000000000ff.7`, as the SSE endpoint writes it.
        pub fn sse_event(html: &str) -> String {
            let stream = crate::name::StreamName::new("s").unwrap_or_else(|_| unreachable!());
            let frame = crate::hub::Frame::message(
                &stream,
                crate::hub::Position::new(0xff, 7),
                0,
                std::sync::Arc::from(html),
            );
            String::from_utf8_lossy(crate::web::protocol::event(&frame)).into_owned()
        }
    }

    /// The stream of one row, from its prefix and key values.
    pub fn row_stream(prefix: &str, keys: &[&dyn core::fmt::Display]) -> crate::Stream {
        crate::name::StreamName::for_row(prefix, keys.iter().copied()).into()
    }

    /// The stream of an entity's collection: its prefix alone (`room`).
    pub fn collection_stream(prefix: &'static str) -> crate::Stream {
        crate::name::StreamName::new(prefix)
            .unwrap_or_else(|_| crate::name::StreamName::for_row(prefix, []))
            .into()
    }
}
