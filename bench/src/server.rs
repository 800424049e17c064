//! A server under test: a child process listening on a free loopback port, and what
//! `/proc` says about its memory and CPU time; a deployment of one or more of them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long a server may take to accept connections after it starts.
const START_WITHIN: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// A running server. Dropping it kills the process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `program` with `env` (plus `PORT` and `BIND` for a free loopback port),
    /// its output going to `log`, and waits until it accepts connections.
    ///
    /// `TURBO_MODEL_REDIS_URL` is not passed on from the benchmark's environment: a
    /// chat started here runs in one process unless `env` names a Redis.
    ///
    /// # Errors
    ///
    /// When it cannot start, exits, or does not listen within 30 s; the message ends
    /// with the tail of its log.
    pub async fn start(
        program: &Path,
        env: &[(&str, String)],
        log: PathBuf,
    ) -> Result<Self, String> {
        let port = free_port()?;
        let mut command = Command::new(program);
        command
            .env_remove("TURBO_MODEL_REDIS_URL")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1");
        Self::spawn(command, port, log).await
    }

    /// Starts a Redis server of the benchmark's own (`program` is `redis-server`) on a
    /// free loopback port, without persistence, and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_redis(program: &Path, log: PathBuf) -> Result<Self, String> {
        let port = free_port()?;
        let mut command = Command::new(program);
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        Self::spawn(command, port, log).await
    }

    async fn spawn(mut command: Command, port: u16, log: PathBuf) -> Result<Self, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{program} exited at once"))?;
        let mut server = Self {
            child,
            pid,
            addr,
            log,
        };
        server.wait_until_listening().await?;
        Ok(server)
    }

    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited ({status}){}", self.log_tail()));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_WITHIN {
                return Err(format!(
                    "server not listening on {} after {START_WITHIN:?}{}",
                    self.addr,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
    ///
    /// # Errors
    ///
    /// When `/proc` cannot be read (the process is gone).
    pub fn rss_kb(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in {path}"))
    }

    /// CPU time it has used so far (user + system, all threads), in clock ticks.
    ///
    /// # Errors
    ///
    /// When `/proc` cannot be read (the process is gone).
    pub fn cpu_ticks(&self) -> Result<u64, String> {
        cpu_ticks_of(&self.pid.to_string())
    }

    /// Asks it to stop (SIGTERM), waits up to 15 s, then kills it.
    ///
    /// # Errors
    ///
    /// When it had to be killed, or waiting for it failed.
    pub async fn stop(mut self) -> Result<(), String> {
        let asked = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if asked && let Ok(waited) = tokio::time::timeout(STOP_WITHIN, self.child.wait()).await {
            return waited
                .map(drop)
                .map_err(|e| format!("waiting for the server: {e}"));
        }
        self.child
            .kill()
            .await
            .map_err(|e| format!("killing the server: {e}"))?;
        Err(format!(
            "the server did not stop on SIGTERM within {STOP_WITHIN:?}; killed"
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; log {}:\n{tail}", self.log.display())
    }
}

/// What serves one scenario: one web server, or several sharing a broker (the chat
/// twice, on one Redis). Memory and CPU are the sums over every process, broker included.
#[derive(Debug)]
pub struct Deployment {
    web: Vec<Server>,
    broker: Option<Server>,
}

impl Deployment {
    /// One web server on its own.
    pub fn single(server: Server) -> Self {
        Self {
            web: vec![server],
            broker: None,
        }
    }

    /// Web servers that share `broker`.
    pub fn brokered(web: Vec<Server>, broker: Server) -> Self {
        Self {
            web,
            broker: Some(broker),
        }
    }

    /// Where the web servers listen: subscriber `i` uses `addrs()[i % len]`, the
    /// publisher the first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.web.iter().map(Server::addr).collect()
    }

    fn all(&self) -> impl Iterator<Item = &Server> {
        self.web.iter().chain(&self.broker)
    }

    /// The resident set sizes of every process, summed, in KiB.
    ///
    /// # Errors
    ///
    /// As [`Server::rss_kb`].
    pub fn rss_kb(&self) -> Result<u64, String> {
        self.all().map(Server::rss_kb).sum()
    }

    /// The CPU time of every process, summed, in clock ticks.
    ///
    /// # Errors
    ///
    /// As [`Server::cpu_ticks`].
    pub fn cpu_ticks(&self) -> Result<u64, String> {
        self.all().map(Server::cpu_ticks).sum()
    }

    /// Stops the web servers, then the broker.
    ///
    /// # Errors
    ///
    /// The first process that did not stop cleanly, as [`Server::stop`].
    pub async fn stop(self) -> Result<(), String> {
        let mut first_error = None;
        for server in self.web.into_iter().chain(self.broker) {
            if let Err(error) = server.stop().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// CPU time this process (the load generator) has used so far, in clock ticks.
///
/// # Errors
///
/// When `/proc/self/stat` cannot be read.
pub fn own_cpu_ticks() -> Result<u64, String> {
    cpu_ticks_of("self")
}

fn cpu_ticks_of(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing parenthesis. There, field 3 (state) is the first; utime and
    // stime are fields 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no field {n} in {path}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when that cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|ticks| ticks.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// A loopback port nobody listens on now.
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_time() {
        let busy: u64 = (0..5_000_000u64).map(std::hint::black_box).sum();
        assert!(busy > 0);
        assert!(own_cpu_ticks().is_ok());
        assert!(clock_ticks_per_second() > 0);
    }
}
