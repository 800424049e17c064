//! A Redis Cluster of the test's own: three masters (no replicas) on free loopback ports,
//! made with `redis-cli --cluster create`. A master can be stopped and started again
//! empty; the others keep serving their slots meanwhile.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the cluster may take to form, or a node to come back.
const WITHIN: Duration = Duration::from_secs(30);

/// One node: its port, its folder (which keeps `nodes.conf`: the node's id and slots
/// survive a restart, its data does not), and its process.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                // The other masters keep serving their slots while one is down.
                "--cluster-require-full-coverage",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start redis-server (Debian package redis-server): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running three-master cluster, stopped on drop.
pub struct TestCluster {
    nodes: Vec<Node>,
    root: PathBuf,
}

impl TestCluster {
    /// Starts three masters, joins them into a cluster, and waits until it serves.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not form within
    /// 30 s.
    pub fn start() -> Self {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "turbo-model-cluster-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let nodes = (0..3)
            .map(|i| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .unwrap_or_else(|e| panic!("a free port: {e}"));
                let dir = root.join(format!("node-{i}"));
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
                let mut node = Node {
                    port,
                    dir,
                    child: None,
                };
                node.run();
                node
            })
            .collect();
        let cluster = Self { nodes, root };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for node in &cluster.nodes {
            cluster.wait_until_ok(node.port);
        }
        cluster
    }

    /// The nodes' URLs, for [`Redis::cluster`](turbo_model::backend::Redis::cluster).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// Which master (0, 1 or 2) serves the hash slot of `key`.
    ///
    /// # Panics
    ///
    /// If the cluster does not answer.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = cli(self.nodes[0].port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        let nodes = cli(self.nodes[0].port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(address) = fields.get(1) else {
                continue;
            };
            let serves = fields.iter().skip(8).any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let port: u16 = address
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("a node address in {line:?}"));
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .unwrap_or_else(|| panic!("port {port} is not one of this cluster's"));
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}")
    }

    /// Stops master `i`: its slots are not served, its data is gone.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts master `i` again, empty, with its slots; waits until the cluster serves.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].run();
        for node in &self.nodes {
            self.wait_until_ok(node.port);
        }
    }

    fn wait_until_ok(&self, port: u16) {
        let deadline = Instant::now() + WITHIN;
        loop {
            let info = cli(port, &["cluster", "info"]);
            if info.contains("cluster_state:ok") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok on {port} after {WITHIN:?}:\n{info}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `redis-cli -p PORT ARGS…`'s output (empty when the node does not answer).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}
