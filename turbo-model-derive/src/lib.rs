//! The macros of [turbo-model](https://docs.rs/turbo-model). Use them through the
//! facade, `turbo_model::ModelStream` and `turbo_model::active_model_behavior`; the paths
//! they generate name `::turbo_model`.
//!
//! The derive is built in phases, one module each: `ast` checks the shape of the input,
//! `attr` reads the attributes, `valid` checks what they say together, and `expand`
//! writes the code. Every attribute mistake is collected and reported at once, next to a
//! complete stub, so one mistake gives one error.

mod ast;
mod attr;
mod behavior;
mod case;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Gives a SeaORM entity's rows their Turbo streams and installs the hooks.
///
/// Derive it on the `Model`, next to `DeriveEntityModel`:
///
/// ```
/// mod message {
///     use sea_orm::entity::prelude::*;
///     use serde::Serialize;
///     use turbo_model::ModelStream;
///
///     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, ModelStream, Serialize)]
///     #[sea_orm(table_name = "message")]
///     pub struct Model {
///         #[sea_orm(primary_key)]
///         pub id: i32,
///         #[stream(parent = super::room::Entity)]
///         pub room_id: i32,
///         pub text: String,
///     }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #   pub enum Relation {}
/// }
/// # mod room {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
/// #     #[sea_orm(table_name = "room")]
/// #     pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// # }
///
/// # fn main() {
/// let message = message::Model { id: 7, room_id: 3, text: "hi".into() };
/// assert_eq!(message.stream().name(), "message:7");
/// assert_eq!(message.parent_stream().name(), "room:3");
/// # }
/// ```
///
/// Declarative broadcasts, for a row shown in its parent's list, need no hook at all:
///
/// ```
/// mod message {
///     use sea_orm::entity::prelude::*;
///
///     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
///     #[sea_orm(table_name = "message")]
///     #[stream(broadcasts_to = parent, template = "chat/message.html", target = "messages")]
///     pub struct Model {
///         #[sea_orm(primary_key)]
///         pub id: i32,
///         #[stream(parent = super::room::Entity)]
///         pub room_id: i32,
///         pub text: String,
///     }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #   pub enum Relation {}
/// }
/// # mod room {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
/// #     #[sea_orm(table_name = "room")]
/// #     pub struct Model { #[sea_orm(primary_key)] pub id: i32 }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// # }
/// # fn main() {
/// // chat/message.html: <p id="{{ message | dom_id }}">{{ message.text }}</p>
/// let message = message::Model { id: 12, room_id: 3, text: "hi".into() };
/// assert_eq!(message.dom_id(), "message_12");
/// # }
/// ```
///
/// # Generated
///
/// - `StreamEntity` for `Entity`: the stream prefix, which is the table name unless
///   `#[stream(prefix = "...")]` says otherwise;
/// - `StreamModel` for `Model`, and the same as inherent methods so that no import is
///   needed: `model.stream()` is the row's own stream, `prefix:key` (composite keys
///   joined by `,`, in field order), and `Entity::stream_of(key)` is the same stream
///   from a key (a tuple for a composite key);
/// - `model.parent_stream()` for the one field marked `#[stream(parent = path::Entity)]`:
///   the parent row's stream, without a query. When the field is written `Option<T>`,
///   it returns `Option<Stream>`;
/// - `ActiveModelBehavior` for `ActiveModel`, which runs the registered hooks after
///   saves and deletes. With `#[stream(custom_behavior)]` it is not generated: write
///   your own impl and put `#[turbo_model::active_model_behavior]` on it;
/// - with `#[stream(broadcasts_refreshes)]`, a hook that sends a `refresh` (debounced)
///   to the parent's stream after every save and delete, to the entity's own stream (the
///   prefix alone, e.g. `room`, for index pages) after a create, and to the row's stream
///   after an update or delete: pages that subscribe to them reload (or morph)
///   themselves, with no hook to write;
/// - with `#[stream(broadcasts_to = parent, template = "...", target = "...")]`, a hook
///   that renders the template for the row and, on the parent's stream, appends it to
///   the element `target` when the row is created, replaces the row's element (its
///   `dom_id`, `message_12`) when it is updated and removes it when it is deleted.
///   `inserts_by = prepend` prepends instead. `broadcasts_to = "lobby"` sends to a
///   stream by name; `#[stream(broadcasts, template = "...")]` sends creates to the
///   entity's stream (`message`) and updates and deletes to the row's own
///   (`message:12`). `target` defaults to the stream prefix. The template gets the row
///   as `row` and under the name of the entity's module (`message`), and gives its
///   outer element the id `{{ message | dom_id }}`. The broadcasts wait for COMMIT;
///   an optional parent that is `None` sends nothing;
/// - `model.dom_id()`: the id of the element that shows the row, `message_12`
///   ([`turbo_model::dom_id`](https://docs.rs/turbo-model/latest/turbo_model/fn.dom_id.html));
/// - the registration the `turbo_subscribe` template tag uses to find a row's stream
///   from its serialized fields (honouring `#[serde(rename, rename_all, skip)]`).
///
/// # Attributes
///
/// | Where  | Attribute                            | Meaning                             |
/// |--------|--------------------------------------|-------------------------------------|
/// | struct | `#[stream(prefix = "rooms")]`        | stream names start `rooms:`         |
/// | struct | `#[stream(custom_behavior)]`         | no `ActiveModelBehavior` impl       |
/// | struct | `#[stream(broadcasts_refreshes)]`    | refresh pages on every save/delete  |
/// | struct | `#[stream(broadcasts_to = parent)]`  | append/replace/remove on the parent's stream |
/// | struct | `#[stream(broadcasts_to = "lobby")]` | the same, on a stream by name       |
/// | struct | `#[stream(broadcasts)]`              | the same, on the entity's and row's streams |
/// | struct | `#[stream(template = "m.html")]`     | the template of one row (required with the three above) |
/// | struct | `#[stream(target = "messages")]`     | where created rows go (default: the prefix) |
/// | struct | `#[stream(inserts_by = prepend)]`    | prepend created rows (default `append`) |
/// | field  | `#[stream(parent = super::room::Entity)]` | the field holds the parent's key |
///
/// With `#[sea_orm::model]` the derive also lands on the generated `ModelEx`; there it
/// generates nothing.
#[proc_macro_derive(ModelStream, attributes(stream))]
pub fn derive_model_stream(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Adds turbo-model's hooks to an entity's own `ActiveModelBehavior` impl.
///
/// For a `Model` with `#[stream(custom_behavior)]`. Your `after_save`, `before_delete`
/// and `after_delete` run first, as written (`?` and `return` included); their result is
/// then handed to turbo-model. Methods you leave out get turbo-model's alone. Put the
/// attribute above `#[async_trait]`, or leave `#[async_trait]` out: it is added.
///
/// ```
/// mod note {
///     use sea_orm::entity::prelude::*;
///
///     #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize)]
///     #[sea_orm(table_name = "note")]
///     #[stream(custom_behavior)]
///     pub struct Model {
///         #[sea_orm(primary_key)]
///         pub id: i32,
///         pub text: String,
///     }
/// #   #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #   pub enum Relation {}
///
///     #[turbo_model::active_model_behavior]
///     impl ActiveModelBehavior for ActiveModel {
///         async fn before_save<C: ConnectionTrait>(self, _db: &C, _insert: bool) -> Result<Self, DbErr> {
///             Ok(self)
///         }
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn active_model_behavior(args: TokenStream, input: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(input.clone());
    behavior::expand(args.into(), input.into())
        .unwrap_or_else(|error| {
            // Keep the user's impl (and mark it), so that the one error is all they see.
            let mut tokens = error.into_compile_error();
            if let Ok(imp) = syn::parse2::<syn::ItemImpl>(original.clone())
                && behavior::check_trait(&imp).is_ok()
            {
                tokens.extend(behavior::installed_marker(&imp));
            }
            tokens.extend(original);
            tokens
        })
        .into()
}
