//! The orders' domain events and their handler: the one place where an order's status
//! changes, and where every open page of the order is told.
//!
//! Whoever sees something happen to an order (the warehouse's button, the courier's
//! feed in [`crate::courier`]) publishes an [`OrderEvent`] on the [`EventBus`]. One task
//! handles the events in the order they were published: it moves the order to its new
//! status in the database, then replaces the order's status badge on every page of the
//! order that is open, with a stream addressed by name:
//!
//! ```no_run
//! # use orders::order;
//! # use turbo_model::{Turbo, context};
//! # fn announce(order: order::Model) -> turbo_model::Result<()> {
//! turbo_model::stream(order::stream_name(order.id))?
//!     .replace("orders/status.html", context! { order })
//!     .target(order::badge_id(order.id))
//!     .send()?;
//! # Ok(()) }
//! ```
//!
//! No model hook is involved: the handler, not the ORM, decides what to broadcast.

use std::fmt;
use std::sync::Arc;

use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, Set};
use tokio::sync::{OwnedRwLockReadGuard, RwLock, mpsc};
use turbo_model::{Turbo, context};

use crate::order::{self, Status};

/// Events waiting for the handler before [`EventBus::publish`] waits for room.
const QUEUE: usize = 64;

/// Something that happened to an order. Each one moves the order one step forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    /// The payment for the order arrived.
    PaymentReceived {
        /// The order.
        order_id: i32,
    },
    /// The warehouse packed the order.
    Packed {
        /// The order.
        order_id: i32,
    },
    /// The courier picked the order up.
    Shipped {
        /// The order.
        order_id: i32,
    },
    /// The customer received the order.
    Delivered {
        /// The order.
        order_id: i32,
    },
}

impl OrderEvent {
    /// The event that moves order `order_id` to `status`; `None` for
    /// [`Status::Placed`], which placing the order sets.
    pub fn reaching(order_id: i32, status: Status) -> Option<Self> {
        match status {
            Status::Placed => None,
            Status::Paid => Some(Self::PaymentReceived { order_id }),
            Status::Packed => Some(Self::Packed { order_id }),
            Status::Shipped => Some(Self::Shipped { order_id }),
            Status::Delivered => Some(Self::Delivered { order_id }),
        }
    }

    /// The order it happened to.
    pub fn order_id(self) -> i32 {
        match self {
            Self::PaymentReceived { order_id }
            | Self::Packed { order_id }
            | Self::Shipped { order_id }
            | Self::Delivered { order_id } => order_id,
        }
    }

    /// The status it moves the order to.
    pub fn status(self) -> Status {
        match self {
            Self::PaymentReceived { .. } => Status::Paid,
            Self::Packed { .. } => Status::Packed,
            Self::Shipped { .. } => Status::Shipped,
            Self::Delivered { .. } => Status::Delivered,
        }
    }
}

/// The in-process event bus: a bounded queue in front of the one handler task.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: mpsc::Sender<OrderEvent>,
    changes: Arc<RwLock<()>>,
}

/// The handler task has stopped, so events can no longer be published.
#[derive(Debug)]
pub struct EventBusClosed;

impl fmt::Display for EventBusClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the order event handler has stopped")
    }
}

impl std::error::Error for EventBusClosed {}

impl EventBus {
    /// Starts the handler task on the current Tokio runtime, broadcasting through
    /// `turbo`; returns the bus that feeds it. The task ends when every clone of the bus
    /// is dropped.
    pub fn start(db: DatabaseConnection, turbo: &Turbo) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let changes = Arc::new(RwLock::new(()));
        tokio::spawn(turbo.scope(handle(db, receiver, Arc::clone(&changes))));
        Self { sender, changes }
    }

    /// Queues `event` for the handler; waits while the queue is full.
    ///
    /// # Errors
    ///
    /// [`EventBusClosed`] when the handler task has stopped.
    pub async fn publish(&self, event: OrderEvent) -> Result<(), EventBusClosed> {
        self.sender.send(event).await.map_err(|_| EventBusClosed)
    }

    /// Holds off status changes while the guard lives. A page holds it from loading an
    /// order to rendering it, because the page subscribes from the time it is rendered:
    /// a change applied in between would be neither on the page nor sent to it.
    pub async fn hold_changes(&self) -> OwnedRwLockReadGuard<()> {
        Arc::clone(&self.changes).read_owned().await
    }
}

/// The handler: applies each event, then broadcasts the new status badge.
async fn handle(
    db: DatabaseConnection,
    mut events: mpsc::Receiver<OrderEvent>,
    changes: Arc<RwLock<()>>,
) {
    while let Some(event) = events.recv().await {
        // Held until the broadcast is sent; see `EventBus::hold_changes`.
        let _applying = changes.write().await;
        match apply(&db, event).await {
            Ok(Some(order)) => {
                tracing::info!(order = order.id, status = ?order.status, "order moved");
                let badge = turbo_model::stream(order::stream_name(order.id)).map(|stream| {
                    stream
                        .replace("orders/status.html", context! { order })
                        .target(order::badge_id(order.id))
                });
                if let Err(error) = badge.and_then(turbo_model::Broadcast::send) {
                    tracing::error!(?event, %error, "cannot broadcast the order's new status");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::error!(?event, %error, "order event not applied"),
        }
    }
    tracing::debug!("order event handler stopped");
}

/// Moves the order to the event's status when that is its next one; returns the
/// updated order, or `None` when the event was ignored.
async fn apply(db: &DatabaseConnection, event: OrderEvent) -> Result<Option<order::Model>, DbErr> {
    let Some(order) = order::Entity::find_by_id(event.order_id()).one(db).await? else {
        tracing::warn!(?event, "event for an order that does not exist");
        return Ok(None);
    };
    if order.status.next() != Some(event.status()) {
        // A second click, or the courier and the warehouse reporting the same step.
        tracing::debug!(?event, status = ?order.status, "event ignored: not the next step");
        return Ok(None);
    }
    let mut changed = order.into_active_model();
    changed.status = Set(event.status());
    changed.update(db).await.map(Some)
}
