//! The workspace's integration tests, as one test binary: a real server on an ephemeral
//! port, real sockets, SQLite and PostgreSQL, Redis servers of the tests' own, headless
//! Chromium. One binary links SeaORM, sqlx, Redis and the WebDriver client once.
//!
//! No test installs a `Turbo`: each builds its own and passes it to the app it serves, or
//! runs its code inside `Turbo::scope`, so that tests with different templates, hubs and
//! hook policies share the process.

mod broker;
mod browser;
mod browser_parity;
mod chaos;
mod cluster;
mod declared;
mod delivery;
mod hook_errors;
mod hooks;
mod integrity;
mod jobs;
mod later;
mod metrics;
mod orders;
mod parity;
mod render_once;
mod socket;
mod transactions;
mod tutorial;
