//! A real browser for the tests: headless Chromium driven through WebDriver.
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port. Each
//! [`Browser::open_page`] opens a new WebDriver session, which is a Chromium of its own
//! with a fresh profile: two pages are two users, sharing no cookies and no storage.
//!
//! ```no_run
//! # async fn demo() -> Result<(), turbo_model_tests::browser::BrowserError> {
//! use std::time::Duration;
//! use turbo_model_tests::browser::Browser;
//!
//! let browser = Browser::start().await?;
//! let page = browser.open_page().await?;
//! page.goto("http://127.0.0.1:3000/").await?;
//! page.wait_for("#room-form", Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Missing Chromium
//!
//! Without `/usr/bin/chromium` or `/usr/bin/chromedriver`, [`Browser::start`] fails with
//! [`BrowserError::NotInstalled`], which names `scripts/install-browser`. Tests never
//! skip silently.
//!
//! # Time limits
//!
//! chromedriver gets [`DRIVER_START_TIMEOUT`] to answer, every WebDriver command
//! [`COMMAND_TIMEOUT`], and every `wait_*` its own timeout, polled every 25 ms. A failure
//! says what was waited for and what the page had instead: its URL, the inner HTML of the
//! element chosen with [`Page::show_on_failure`] (the body by default) and the browser
//! console.
//!
//! # Cleanup
//!
//! chromedriver runs in a process group of its own. Dropping the [`Browser`] kills that
//! group, every Chromium included, and removes the profiles. [`Page::close`] ends a
//! session gracefully; a dropped [`Page`] ends it in the background.

use std::{
    fmt, fs, io,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, error::CmdError, wd::WebDriverCompatibleCommand};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::{sys::signal, unistd::Pid};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, sleep, timeout},
};

/// Where the Debian package `chromium` installs the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where the Debian package `chromium-driver` installs the WebDriver server.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver has to answer `GET /status` after it is spawned.
pub const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one WebDriver command may take, a page load included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Failure messages keep this many characters of the page's HTML.
const SNAPSHOT_CHARS: usize = 4000;

/// Flags without which headless Chromium cannot run as root on a closed network:
/// background networking would try to reach Google and be refused.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,700",
];

/// Why the browser could not do what a test asked.
///
/// `Debug` prints the same text as `Display`, so a test returning
/// `Result<(), BrowserError>` fails with a readable message, page contents included.
#[derive(thiserror::Error)]
pub enum BrowserError {
    /// `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing.
    #[error(
        "Chromium is not installed: run scripts/install-browser \
         (Debian packages chromium, chromium-driver); missing: {missing}"
    )]
    NotInstalled {
        /// The missing paths.
        missing: String,
    },
    /// A file or process operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// chromedriver exited or did not answer in time.
    #[error("chromedriver did not become ready: {reason}\nchromedriver log:\n{log}")]
    DriverNotReady {
        /// What went wrong.
        reason: String,
        /// chromedriver's output so far.
        log: String,
    },
    /// chromedriver answered but could not start a Chromium session.
    #[error("chromedriver could not open a Chromium session: {source}\nchromedriver log:\n{log}")]
    Session {
        /// fantoccini's error.
        source: fantoccini::error::NewSessionError,
        /// chromedriver's output so far.
        log: String,
    },
    /// A WebDriver command failed or took longer than [`COMMAND_TIMEOUT`].
    #[error("WebDriver command `{command}` failed: {reason}\n{page}")]
    Command {
        /// The command, with its argument.
        command: String,
        /// The WebDriver error, or the timeout.
        reason: String,
        /// What the page had.
        page: String,
    },
    /// A `wait_*` condition did not hold in time.
    #[error("timed out after {waited:?} waiting for {what}\nthe page had instead:\n{page}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long it was waited for.
        waited: Duration,
        /// What the page had.
        page: String,
    },
}

impl fmt::Debug for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> BrowserError {
    let action = action.into();
    move |source| BrowserError::Io { action, source }
}

/// A running chromedriver; each [`Page`] it opens is a separate headless Chromium.
pub struct Browser {
    driver: Child,
    url: String,
    dir: PathBuf,
    pages_opened: AtomicUsize,
}

impl Browser {
    /// Spawns `chromedriver` on a free port of 127.0.0.1 and waits until it is ready.
    ///
    /// # Errors
    ///
    /// [`BrowserError::NotInstalled`] when Chromium or chromedriver is missing;
    /// [`BrowserError::DriverNotReady`] when chromedriver exits or does not answer within
    /// [`DRIVER_START_TIMEOUT`].
    pub async fn start() -> Result<Self, BrowserError> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|path| !Path::new(path).exists())
            .collect();
        if !missing.is_empty() {
            return Err(BrowserError::NotInstalled {
                missing: missing.join(", "),
            });
        }

        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "turbo-model-browser-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover from an earlier process with the same id is stale.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        let log = fs::File::create(dir.join("chromedriver.log"))
            .map_err(io_error("create chromedriver.log"))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("clone chromedriver.log"))?;

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(io_error("find a free port on 127.0.0.1"))?
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, so that dropping the Browser can kill Chromium too.
            .process_group(0)
            .spawn()
            .map_err(io_error(format!("spawn {CHROMEDRIVER}")))?;
        let mut browser = Browser {
            driver,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            pages_opened: AtomicUsize::new(0),
        };
        browser.wait_until_ready(port).await?;
        Ok(browser)
    }

    async fn wait_until_ready(&mut self, port: u16) -> Result<(), BrowserError> {
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(self.not_ready(format!("chromedriver exited with {status}")));
            }
            if let Ok(Ok(true)) = timeout(Duration::from_secs(1), driver_is_ready(port)).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!(
                    "no ready answer from {}/status within {DRIVER_START_TIMEOUT:?}",
                    self.url
                )));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn not_ready(&self, reason: String) -> BrowserError {
        BrowserError::DriverNotReady {
            reason,
            log: self.log(),
        }
    }

    /// chromedriver's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("chromedriver.log"))
            .unwrap_or_else(|error| format!("(could not read chromedriver.log: {error})"))
    }

    /// Opens a new, independent headless Chromium with a fresh profile.
    ///
    /// # Errors
    ///
    /// [`BrowserError::Session`] when chromedriver cannot start Chromium.
    pub async fn open_page(&self) -> Result<Page, BrowserError> {
        self.open(true).await
    }

    /// Opens a headless Chromium whose pages run no JavaScript: Turbo and the client
    /// element stay inert, forms post and redirect as in a browser without scripts.
    ///
    /// # Errors
    ///
    /// As [`open_page`](Self::open_page).
    pub async fn open_page_without_javascript(&self) -> Result<Page, BrowserError> {
        self.open(false).await
    }

    async fn open(&self, javascript: bool) -> Result<Page, BrowserError> {
        let n = self.pages_opened.fetch_add(1, Ordering::Relaxed);
        let profile = self.dir.join(format!("profile-{n}"));
        fs::create_dir_all(&profile).map_err(io_error(format!("create {}", profile.display())))?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| flag.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": 10_000, "script": 5_000, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "profile.managed_default_content_settings.javascript":
                        if javascript { 1 } else { 2 }
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let connecting = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await;
        match connecting {
            Ok(client) => Ok(Page {
                client,
                show_on_failure: Mutex::new("body".to_owned()),
            }),
            Err(source) => Err(BrowserError::Session {
                source,
                log: self.log(),
            }),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = signal::killpg(Pid::from_raw(pid), signal::Signal::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Asks chromedriver's `GET /status` whether it accepts sessions.
async fn driver_is_ready(port: u16) -> io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // chromedriver keeps the connection open despite `Connection: close`: read until the
    // answer is in rather than to the end.
    let mut response = Vec::new();
    let mut chunk = [0; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        response.extend_from_slice(&chunk[..read]);
        let compact: String = String::from_utf8_lossy(&response)
            .split_whitespace()
            .collect();
        if compact.contains("\"ready\":true") {
            return Ok(true);
        }
        if read == 0 || compact.contains("\"ready\":false") {
            return Ok(false);
        }
    }
}

/// One browser window of one user: a WebDriver session on its own Chromium.
pub struct Page {
    client: Client,
    show_on_failure: Mutex<String>,
}

impl Page {
    /// Failure messages show the inner HTML of the first element matching `selector`
    /// (instead of the whole body), e.g. `#messages`.
    pub fn show_on_failure(&self, selector: &str) {
        *self
            .show_on_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = selector.to_owned();
    }

    /// Navigates to `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.run(format!("goto {url}"), self.client.goto(url)).await
    }

    /// The URL the page shows now.
    pub async fn url(&self) -> Result<String, BrowserError> {
        let url = self.run("current url", self.client.current_url()).await?;
        Ok(url.to_string())
    }

    /// Runs `script` as the body of a function (`return` gives the result) with
    /// `arguments[0..]` bound to `args`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        self.run(
            format!("execute {script}"),
            self.client.execute(script, args),
        )
        .await
    }

    /// Waits until an element matches `selector`.
    pub async fn wait_for(&self, selector: &str, within: Duration) -> Result<(), BrowserError> {
        self.wait_until(
            &format!("an element matching `{selector}`"),
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(selector)],
            within,
        )
        .await
    }

    /// Waits until no element matches `selector`.
    pub async fn wait_for_gone(
        &self,
        selector: &str,
        within: Duration,
    ) -> Result<(), BrowserError> {
        self.wait_until(
            &format!("no element to match `{selector}`"),
            "return document.querySelector(arguments[0]) === null",
            vec![json!(selector)],
            within,
        )
        .await
    }

    /// Waits until an element matching `selector` has exactly `text` as its text content.
    pub async fn wait_for_text(
        &self,
        selector: &str,
        text: &str,
        within: Duration,
    ) -> Result<(), BrowserError> {
        self.wait_until(
            &format!("an element matching `{selector}` with the text {text:?}"),
            "return Array.from(document.querySelectorAll(arguments[0]))
                 .some(element => element.textContent === arguments[1])",
            vec![json!(selector), json!(text)],
            within,
        )
        .await
    }

    /// Polls `script` (as in [`Page::execute`]) until it returns `true`; `what` names the
    /// condition in the failure message.
    pub async fn wait_until(
        &self,
        what: &str,
        script: &str,
        args: Vec<Value>,
        within: Duration,
    ) -> Result<(), BrowserError> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let poll = timeout(
                left.max(POLL_INTERVAL),
                self.client.execute(script, args.clone()),
            );
            // A script error can be transient (the page is between two documents): it
            // counts as "not yet", and is reported if it was the last check.
            let last_error = match poll.await {
                Ok(Ok(Value::Bool(true))) => return Ok(()),
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some("the condition got no answer".to_owned()),
            };
            if Instant::now() >= deadline {
                let what = match last_error {
                    Some(error) => format!("{what} (last check failed: {error})"),
                    None => what.to_owned(),
                };
                return Err(BrowserError::Timeout {
                    what,
                    waited: within,
                    page: self.snapshot().await,
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// The text content of the first element matching `selector`.
    pub async fn text_of(&self, selector: &str) -> Result<String, BrowserError> {
        let script = "const element = document.querySelector(arguments[0]);
                      return element === null ? null : element.textContent";
        self.string_of(selector, script).await
    }

    /// The text content of every element matching `selector`, in document order.
    pub async fn texts_of(&self, selector: &str) -> Result<Vec<String>, BrowserError> {
        let script = "return Array.from(document.querySelectorAll(arguments[0]))
                          .map(element => element.textContent)";
        let texts = self.execute(script, vec![json!(selector)]).await?;
        serde_json::from_value(texts.clone()).map_err(|error| BrowserError::Command {
            command: format!("texts of `{selector}`"),
            reason: format!("expected a list of strings, got {texts}: {error}"),
            page: String::new(),
        })
    }

    /// The current value of the form field matching `selector`.
    pub async fn value_of(&self, selector: &str) -> Result<String, BrowserError> {
        let script = "const element = document.querySelector(arguments[0]);
                      return element === null ? null : element.value";
        self.string_of(selector, script).await
    }

    /// The inner HTML of the first element matching `selector`.
    pub async fn html_of(&self, selector: &str) -> Result<String, BrowserError> {
        let script = "const element = document.querySelector(arguments[0]);
                      return element === null ? null : element.innerHTML";
        self.string_of(selector, script).await
    }

    /// The value of the attribute `name` of the first element matching `selector`,
    /// `None` when the element lacks it.
    pub async fn attribute_of(
        &self,
        selector: &str,
        name: &str,
    ) -> Result<Option<String>, BrowserError> {
        let element = self.find(selector).await?;
        self.run(
            format!("attribute {name} of `{selector}`"),
            element.attr(name),
        )
        .await
    }

    /// How many elements match `selector`.
    pub async fn count(&self, selector: &str) -> Result<usize, BrowserError> {
        let script = "return document.querySelectorAll(arguments[0]).length";
        let count = self.execute(script, vec![json!(selector)]).await?;
        Ok(count.as_u64().map_or(0, |count| count as usize))
    }

    /// Types `text` into the field matching `selector` after clearing it, key by key
    /// as a user would (input events included).
    pub async fn fill(&self, selector: &str, text: &str) -> Result<(), BrowserError> {
        let field = self.find(selector).await?;
        self.run(format!("clear `{selector}`"), field.clear())
            .await?;
        self.run(
            format!("type {text:?} into `{selector}`"),
            field.send_keys(text),
        )
        .await
    }

    /// Clicks the element matching `selector` as a user would.
    pub async fn click(&self, selector: &str) -> Result<(), BrowserError> {
        let element = self.find(selector).await?;
        self.run(format!("click `{selector}`"), element.click())
            .await
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its folder.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), BrowserError> {
        let path = path.as_ref();
        let png = self.run("screenshot", self.client.screenshot()).await?;
        if let Some(folder) = path.parent() {
            fs::create_dir_all(folder).map_err(io_error(format!("create {}", folder.display())))?;
        }
        fs::write(path, png).map_err(io_error(format!("write {}", path.display())))
    }

    /// Ends the session, which closes this page's Chromium.
    pub async fn close(self) -> Result<(), BrowserError> {
        match timeout(COMMAND_TIMEOUT, self.client.close()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(command_error("close session", error.to_string())),
            Err(_) => Err(command_error(
                "close session",
                format!("no answer within {COMMAND_TIMEOUT:?}"),
            )),
        }
    }

    async fn find(&self, selector: &str) -> Result<fantoccini::elements::Element, BrowserError> {
        self.run(
            format!("find `{selector}`"),
            self.client.find(Locator::Css(selector)),
        )
        .await
    }

    async fn string_of(&self, selector: &str, script: &str) -> Result<String, BrowserError> {
        match self.execute(script, vec![json!(selector)]).await? {
            Value::String(value) => Ok(value),
            other => Err(BrowserError::Command {
                command: format!("read `{selector}`"),
                reason: format!("no element matches (got {other})"),
                page: self.snapshot().await,
            }),
        }
    }

    /// Runs one WebDriver command, bounded by [`COMMAND_TIMEOUT`]; a failure carries a
    /// snapshot of the page.
    async fn run<T>(
        &self,
        command: impl Into<String>,
        pending: impl Future<Output = Result<T, CmdError>>,
    ) -> Result<T, BrowserError> {
        let reason = match timeout(COMMAND_TIMEOUT, pending).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {COMMAND_TIMEOUT:?}"),
        };
        Err(BrowserError::Command {
            command: command.into(),
            reason,
            page: self.snapshot().await,
        })
    }

    /// What the page has now, for failure messages: URL, the inner HTML of the element
    /// chosen with [`Page::show_on_failure`], and the browser console's messages since
    /// the previous snapshot. Never fails.
    pub async fn snapshot(&self) -> String {
        let selector = self
            .show_on_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let script = "const element = document.querySelector(arguments[0]);
                      return [location.href, element === null ? null : element.innerHTML]";
        let read = timeout(
            Duration::from_secs(5),
            self.client.execute(script, vec![json!(selector)]),
        )
        .await;
        let mut snapshot = match read {
            Ok(Ok(Value::Array(parts))) => match parts.as_slice() {
                [Value::String(url), Value::String(html)] => {
                    format!("url: {url}\n`{selector}` inner HTML:\n{}", truncate(html))
                }
                [Value::String(url), _] => format!("url: {url}\nno element matches `{selector}`"),
                _ => format!("(unexpected page snapshot {parts:?})"),
            },
            Ok(Ok(other)) => format!("(unexpected page snapshot {other})"),
            Ok(Err(error)) => format!("(could not read the page: {error})"),
            Err(_) => "(could not read the page: no answer within 5s)".to_owned(),
        };
        snapshot.push_str("\nbrowser console:\n");
        snapshot.push_str(&self.console().await);
        snapshot
    }

    /// The browser console's entries since the last call, one a line.
    pub async fn console(&self) -> String {
        let read = timeout(Duration::from_secs(5), self.client.issue_cmd(BrowserLog)).await;
        match read {
            Ok(Ok(Value::Array(entries))) if entries.is_empty() => "(empty)".to_owned(),
            Ok(Ok(Value::Array(entries))) => entries
                .iter()
                .map(|entry| {
                    format!(
                        "{} {}",
                        entry["level"].as_str().unwrap_or("?"),
                        entry["message"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(Ok(other)) => format!("(unexpected console log {other})"),
            Ok(Err(error)) => format!("(could not read the console: {error})"),
            Err(_) => "(could not read the console: no answer within 5s)".to_owned(),
        }
    }
}

fn command_error(command: &str, reason: String) -> BrowserError {
    BrowserError::Command {
        command: command.to_owned(),
        reason,
        page: String::new(),
    }
}

fn truncate(html: &str) -> String {
    match html.char_indices().nth(SNAPSHOT_CHARS) {
        Some((cut, _)) => format!("{}… ({} more bytes)", &html[..cut], html.len() - cut),
        None => html.to_owned(),
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log: the console
/// messages and uncaught errors the page produced, which WebDriver proper cannot read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
