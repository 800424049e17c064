//! A pretend courier, for the "Simulate shipping" button: it reports the order's next
//! step on the event bus every `step` until the order is delivered, so that a visitor
//! watches the badge change without pressing anything.
//!
//! It is one more source of events; the handler in [`crate::events`] does the rest.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait};

use crate::events::{EventBus, OrderEvent};
use crate::order;

/// The orders a courier is working on, so that a second press starts no second courier.
#[derive(Clone, Debug, Default)]
pub(crate) struct Couriers {
    busy: Arc<Mutex<HashSet<i32>>>,
}

impl Couriers {
    /// Sends a courier for order `id` unless one is on it already.
    pub(crate) fn dispatch(
        &self,
        db: DatabaseConnection,
        events: EventBus,
        id: i32,
        step: Duration,
    ) {
        if !self.lock().insert(id) {
            return;
        }
        let couriers = self.clone();
        tokio::spawn(async move {
            deliver(&db, &events, id, step).await;
            couriers.lock().remove(&id);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        // The set stays consistent whatever panicked while holding it.
        self.busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn deliver(db: &DatabaseConnection, events: &EventBus, id: i32, step: Duration) {
    let mut ticks = tokio::time::interval(step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the first step comes one `step` after the press.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let order = match order::Entity::find_by_id(id).one(db).await {
            Ok(Some(order)) => order,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(order = id, %error, "courier cannot read the order");
                return;
            }
        };
        let Some(event) = order
            .status
            .next()
            .and_then(|next| OrderEvent::reaching(id, next))
        else {
            return;
        };
        if events.publish(event).await.is_err() {
            return;
        }
    }
}
