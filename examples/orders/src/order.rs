//! An order, and the states it moves through on its way to the customer.
//!
//! A plain SeaORM entity: no `ModelStream` derive, no hooks. Its status changes in one
//! place, the event handler in [`crate::events`], which also tells the order's pages.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// Where an order is, from the shop to the customer's door, in the order it gets there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The customer placed it.
    #[sea_orm(string_value = "placed")]
    Placed,
    /// The payment arrived.
    #[sea_orm(string_value = "paid")]
    Paid,
    /// The warehouse packed it.
    #[sea_orm(string_value = "packed")]
    Packed,
    /// The courier has it.
    #[sea_orm(string_value = "shipped")]
    Shipped,
    /// The customer has it: the last state.
    #[sea_orm(string_value = "delivered")]
    Delivered,
}

impl Status {
    /// The state after this one; `None` for [`Status::Delivered`].
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Placed => Some(Self::Paid),
            Self::Paid => Some(Self::Packed),
            Self::Packed => Some(Self::Shipped),
            Self::Shipped => Some(Self::Delivered),
            Self::Delivered => None,
        }
    }
}

/// One order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    /// Primary key; the order's stream is `order:{id}`.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// What was ordered, as the customer typed it.
    pub item: String,
    /// Where the order is now.
    pub status: Status,
}

/// Orders stand alone in this example.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The stream every page of order `id` subscribes to.
pub fn stream_name(id: i32) -> String {
    format!("order:{id}")
}

/// The `id` of the order's status badge, which each status change replaces.
pub fn badge_id(id: i32) -> String {
    format!("order-{id}-status")
}
