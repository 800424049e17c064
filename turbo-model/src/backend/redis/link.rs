//! Connections to Redis, one server or a cluster: a multiplexed connection for commands
//! and scripts, and one for Pub/Sub whose messages arrive on a bounded queue.
//!
//! On one server, broadcasts cross on plain channels (`PUBLISH`, `SUBSCRIBE`); on a
//! cluster, on sharded channels (`SPUBLISH`, `SSUBSCRIBE`), each in the hash slot of its
//! stream's keys, so that a broadcast and its stream's log live on one node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, SendError};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::{OnceCell, mpsc};

/// How long a connection attempt and a command may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Channels subscribed or unsubscribed in one command, at most.
const CHANNELS_PER_COMMAND: usize = 1000;

/// Where Redis is.
pub(super) enum Target {
    /// One server.
    Server(redis::Client),
    /// A cluster, found from these nodes.
    Cluster(Vec<String>),
}

impl Target {
    /// The command that announces a broadcast from the scripts.
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            Self::Server(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }

    /// A connection for commands: made now for one server (it connects on first use and
    /// reconnects by itself), on first use for a cluster.
    pub(super) fn commands(&self) -> RedisResult<Commands> {
        match self {
            Self::Server(client) => client
                .get_connection_manager_lazy(
                    redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(RESPONSE_TIMEOUT)),
                )
                .map(Commands::Server),
            Self::Cluster(nodes) => {
                // The publisher retries by itself, within the publish deadline.
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2)
                    .build()?;
                Ok(Commands::Cluster {
                    client: Arc::new(client),
                    connection: Arc::new(OnceCell::new()),
                })
            }
        }
    }

    /// A Pub/Sub connection (RESP3) whose messages, and the news that it dropped, go to
    /// `pushes`.
    pub(super) async fn listener(&self, pushes: PushQueue) -> RedisResult<Listener> {
        match self {
            Self::Server(client) => {
                let info = client.get_connection_info().clone();
                let resp3 = info
                    .redis_settings()
                    .clone()
                    .set_protocol(redis::ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(resp3))?;
                let manager = client
                    .get_connection_manager_with_config(
                        redis::aio::ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(CONNECT_TIMEOUT))
                            .set_response_timeout(Some(RESPONSE_TIMEOUT))
                            .set_push_sender(pushes),
                    )
                    .await?;
                Ok(Listener::Server(manager))
            }
            Self::Cluster(nodes) => {
                // One retry: a channel whose node is down stays pending, and is tried
                // again on the listener's own schedule without holding up the others.
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(1)
                    .push_sender(pushes)
                    .build()?;
                Ok(Listener::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// A connection for commands and scripts. Cheap to clone: clones share it.
#[derive(Clone)]
pub(super) enum Commands {
    Server(ConnectionManager),
    Cluster {
        client: Arc<redis::cluster::ClusterClient>,
        connection: Arc<OnceCell<ClusterConnection>>,
    },
}

/// A connection ready for one command.
pub(super) enum Ready {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Commands {
    /// The connection, made on first use for a cluster.
    pub(super) async fn ready(&self) -> RedisResult<Ready> {
        match self {
            Self::Server(manager) => Ok(Ready::Server(manager.clone())),
            Self::Cluster { client, connection } => connection
                .get_or_try_init(|| client.get_async_connection())
                .await
                .map(|connection| Ready::Cluster(connection.clone())),
        }
    }
}

impl ConnectionLike for Ready {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The Pub/Sub connection.
pub(super) enum Listener {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Listener {
    /// Subscribes to `channels`: in batches on one server, one by one on a cluster (each
    /// goes to the node of its slot).
    pub(super) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Server(c) => {
                for batch in channels.chunks(CHANNELS_PER_COMMAND) {
                    c.subscribe(batch).await?;
                }
            }
            Self::Cluster(c) => {
                for channel in channels {
                    c.ssubscribe(channel).await?;
                }
            }
        }
        Ok(())
    }

    /// Unsubscribes from `channels`.
    pub(super) async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Server(c) => {
                for batch in channels.chunks(CHANNELS_PER_COMMAND) {
                    c.unsubscribe(batch).await?;
                }
            }
            Self::Cluster(c) => {
                for channel in channels {
                    c.sunsubscribe(channel).await?;
                }
            }
        }
        Ok(())
    }
}

/// Where the Pub/Sub connection puts what it receives: a bounded queue. When it is full,
/// what does not fit is dropped and [`overflowed`](Self::overflowed) is set: the
/// receiver then makes every client resume from the log, which has it.
#[derive(Clone)]
pub(super) struct PushQueue {
    sender: mpsc::Sender<PushInfo>,
    overflowed: Arc<AtomicBool>,
}

impl PushQueue {
    /// A queue of `capacity` messages, and its receiving end.
    pub(super) fn new(capacity: usize) -> (Self, mpsc::Receiver<PushInfo>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (
            Self {
                sender,
                overflowed: Arc::default(),
            },
            receiver,
        )
    }

    /// Whether something was dropped since the last call.
    pub(super) fn overflowed(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

impl AsyncPushSender for PushQueue {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match self.sender.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError),
        }
    }
}
