//! Shared support for the workspace tests: the chat app on an ephemeral port, WebSocket
//! clients, databases.

pub mod browser;
pub mod chat_page;
pub mod db;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_server;
pub mod server;
pub mod sse;
pub mod standalone;
pub mod ws;
