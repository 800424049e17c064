//! The shop's pages and the warehouse's buttons.

use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chat::assets::TurboScript;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, QueryOrder, Set};
use serde::Deserialize;
use turbo_model::{Turbo, context};

use crate::courier::Couriers;
use crate::events::{EventBus, OrderEvent};
use crate::order::{self, Status};

/// Longest item name accepted, in characters.
const MAX_ITEM: usize = 100;

#[derive(Clone)]
struct App {
    db: DatabaseConnection,
    events: EventBus,
    couriers: Couriers,
    courier_step: Duration,
    turbo: Turbo,
    turbo_js: TurboScript,
}

/// All of the shop's routes, with turbo-model's endpoint merged in. Status changes go
/// through `events`; "Simulate shipping" advances an order every `courier_step`.
pub fn router(
    db: DatabaseConnection,
    events: EventBus,
    turbo: &Turbo,
    courier_step: Duration,
) -> Router {
    let app = App {
        db,
        events,
        couriers: Couriers::default(),
        courier_step,
        turbo: turbo.clone(),
        turbo_js: TurboScript::load(),
    };
    Router::new()
        .route("/", get(index))
        .route("/orders/", post(place_order))
        .route("/orders/{id}/", get(show_order))
        .route("/orders/{id}/advance", post(advance_order))
        .route("/orders/{id}/simulate", post(simulate_shipping))
        .with_state(app.clone())
        // Turbo from npm at /static/turbo.js, as the chat serves it.
        .merge(app.turbo_js.router())
        // Forms posted from other sites' pages are refused (cross-site request forgery).
        .layer(axum::middleware::from_fn(
            turbo_model::web::reject_cross_site,
        ))
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

impl From<crate::events::EventBusClosed> for Failure {
    fn from(error: crate::events::EventBusClosed) -> Self {
        tracing::error!(%error, "cannot publish an order event");
        Self(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
    }
}

type Page = Result<Response, Failure>;

fn render(app: &App, template: &str, mut context: turbo_model::Context) -> Page {
    context.insert("turbo_js", app.turbo_js.url());
    Ok(Html(app.turbo.render(template, &context)?).into_response())
}

async fn index(State(app): State<App>) -> Page {
    let orders = order::Entity::find()
        .order_by_desc(order::Column::Id)
        .all(&app.db)
        .await?;
    render(&app, "orders/index.html", context! { orders })
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

async fn place_order(State(app): State<App>, Form(form): Form<NewOrder>) -> Page {
    let item = form.item.trim();
    if item.is_empty() || item.chars().count() > MAX_ITEM {
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the item must be 1 to {MAX_ITEM} characters"),
        ));
    }
    let order = order::ActiveModel {
        item: Set(item.to_owned()),
        status: Set(Status::Placed),
        ..Default::default()
    }
    .insert(&app.db)
    .await?;
    tracing::info!(order = order.id, "order placed");
    Ok(Redirect::to(&format!("/orders/{}/", order.id)).into_response())
}

async fn find_order(app: &App, id: i32) -> Result<order::Model, Failure> {
    order::Entity::find_by_id(id)
        .one(&app.db)
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no order {id}")))
}

async fn show_order(State(app): State<App>, Path(id): Path<i32>) -> Page {
    // From reading the status to rendering the page (which records the stream's
    // position), no change may slip in between.
    let _no_changes = app.events.hold_changes().await;
    let order = find_order(&app, id).await?;
    let order_stream = order::stream_name(order.id);
    render(&app, "orders/show.html", context! { order, order_stream })
}

/// The warehouse's button: reports the order's next step. The handler applies it and
/// tells every page of the order, this one included.
async fn advance_order(State(app): State<App>, Path(id): Path<i32>) -> Page {
    let order = find_order(&app, id).await?;
    if let Some(event) = order
        .status
        .next()
        .and_then(|next| OrderEvent::reaching(order.id, next))
    {
        app.events.publish(event).await?;
    }
    Ok(Redirect::to(&format!("/orders/{id}/")).into_response())
}

async fn simulate_shipping(State(app): State<App>, Path(id): Path<i32>) -> Page {
    let order = find_order(&app, id).await?;
    app.couriers.dispatch(
        app.db.clone(),
        app.events.clone(),
        order.id,
        app.courier_step,
    );
    Ok(Redirect::to(&format!("/orders/{id}/")).into_response())
}
