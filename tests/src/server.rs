//! The chat example, served on an ephemeral loopback port for a test.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use turbo_model::Turbo;

/// The signing key every test process uses, so that tokens are reproducible.
pub const TEST_SECRET: &str = "turbo-model test secret, 32+ bytes long";

/// A `Turbo` with the chat's templates and the tests' key, on no database: for signing
/// tokens the chat servers accept, and for rendering the chat's templates.
///
/// # Panics
///
/// If the chat's templates do not load.
pub fn turbo() -> &'static Turbo {
    static TURBO: OnceLock<Turbo> = OnceLock::new();
    TURBO.get_or_init(|| {
        Turbo::builder()
            .templates(chat::templates_dir())
            .secret(TEST_SECRET)
            .build()
            .unwrap_or_else(|e| panic!("chat templates must load: {e}"))
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How a test server accepts connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// Through turbo-model's [`Listener`](turbo_model::web::Listener), with the client's
    /// address, as [`Turbo::serve`](turbo_model::Turbo::serve) does: the hub writes
    /// broadcasts straight to the sockets.
    Listener,
    /// Plain `axum::serve` on a `TcpListener`: each connection's task writes its socket,
    /// through hyper's upgraded connection.
    Plain,
}

/// A running chat: its base URL and its database.
pub struct ChatServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// The app's database (a fresh SQLite file).
    pub db: DatabaseConnection,
    /// The app's `Turbo`: its own hub, and its async hooks read this server's database.
    pub turbo: Turbo,
    file: std::path::PathBuf,
    /// The PostgreSQL database of [`start_on_postgres`](Self::start_on_postgres).
    postgres: Option<crate::db::PgDatabase>,
    server: tokio::task::JoinHandle<()>,
    first_id: i32,
}

impl ChatServer {
    /// Starts the chat on 127.0.0.1 with a fresh SQLite database and a `Turbo` of its
    /// own: its own hub, so that process-wide streams (the room list's `room`) see only
    /// this server's changes.
    ///
    /// # Panics
    ///
    /// If the database or the listener cannot be set up.
    pub async fn start() -> Self {
        Self::start_serving(Serving::Listener).await
    }

    /// As [`start`](Self::start), served as `serving` says.
    ///
    /// # Panics
    ///
    /// If the database or the listener cannot be set up.
    pub async fn start_serving(serving: Serving) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file =
            std::env::temp_dir().join(format!("turbo-model-chat-{}-{}.db", std::process::id(), n));
        let _ = std::fs::remove_file(&file);
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let db = chat::database(&url)
            .await
            .unwrap_or_else(|e| panic!("chat database at {url}: {e}"));
        // Each server gets its own id range, so that a test that mixes up two servers'
        // rooms or messages sees it.
        let base = (n + 1) * 10_000;
        db.execute_unprepared(&format!(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('room', {base}), ('message', {base})"
        ))
        .await
        .unwrap_or_else(|e| panic!("set id ranges: {e}"));
        Self::start_with(db, file, base as i32 + 1, None, serving).await
    }

    /// Starts the chat on a fresh PostgreSQL database of the local server (dropped by
    /// [`stop`](Self::stop)), migrated by the chat itself.
    ///
    /// # Panics
    ///
    /// If PostgreSQL is unreachable, or the database or the listener cannot be set up.
    pub async fn start_on_postgres() -> Self {
        let postgres = crate::db::PgDatabase::create("chat")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = postgres.url();
        let db = chat::database(&url)
            .await
            .unwrap_or_else(|e| panic!("chat database at {url}: {e}"));
        Self::start_with(
            db,
            std::path::PathBuf::new(),
            1,
            Some(postgres),
            Serving::Listener,
        )
        .await
    }

    /// Stops the server and drops its PostgreSQL database, if it has one.
    ///
    /// # Panics
    ///
    /// If the database cannot be dropped.
    pub async fn stop(mut self) {
        self.server.abort();
        let _ = self.db.clone().close().await;
        if let Some(postgres) = self.postgres.take() {
            postgres.drop_now().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// The id the first room and the first message of this server get.
    pub fn first_id(&self) -> i32 {
        self.first_id
    }

    async fn start_with(
        db: DatabaseConnection,
        file: std::path::PathBuf,
        first_id: i32,
        postgres: Option<crate::db::PgDatabase>,
        serving: Serving,
    ) -> Self {
        let turbo = chat::turbo_builder(&db)
            .secret(TEST_SECRET)
            .build()
            .unwrap_or_else(|e| panic!("chat templates must load: {e}"));
        let app = chat::router(db.clone(), &turbo);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local address: {e}"));
        // The chat's builder leaves the write timeout at its default.
        let write_timeout = turbo_model::web::DEFAULT_WRITE_TIMEOUT;
        let server = tokio::spawn(async move {
            let _ = match serving {
                Serving::Listener => {
                    let listener = turbo_model::web::Listener::new(listener, write_timeout);
                    let app =
                        app.into_make_service_with_connect_info::<turbo_model::web::PeerAddr>();
                    axum::serve(listener, app).await
                }
                Serving::Plain => axum::serve(listener, app).await,
            };
        });
        Self {
            base_url: format!("http://{address}"),
            db,
            turbo,
            file,
            postgres,
            server,
            first_id,
        }
    }

    /// The WebSocket endpoint's URL.
    pub fn ws_url(&self) -> String {
        format!("{}/turbo-model/ws", self.base_url.replacen("http", "ws", 1))
    }

    /// An HTTP client that does not follow redirects, so tests see them.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"))
    }

    /// Creates a room through the form; returns its id.
    ///
    /// # Panics
    ///
    /// If the form does not redirect to the new room.
    pub async fn create_room(&self, name: &str) -> i32 {
        let response = self
            .http()
            .post(format!("{}/rooms/", self.base_url))
            .form(&[("name", name)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /rooms/: {e}"));
        assert_eq!(response.status(), 303, "creating a room redirects");
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        location
            .trim_start_matches("/rooms/")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("redirect to a room, got {location:?}"))
    }

    /// Posts a message through the room's form; returns the response status.
    pub async fn post_message(&self, room: i32, text: &str) -> u16 {
        self.http()
            .post(format!("{}/rooms/{room}/messages/", self.base_url))
            .form(&[("text", text)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST message: {e}"))
            .status()
            .as_u16()
    }

    /// Deletes a message through its form; returns the response status.
    pub async fn delete_message(&self, room: i32, message: i32) -> u16 {
        self.http()
            .post(format!(
                "{}/rooms/{room}/messages/{message}/delete",
                self.base_url
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST delete: {e}"))
            .status()
            .as_u16()
    }

    /// The room page's HTML.
    pub async fn room_page(&self, room: i32) -> String {
        self.http()
            .get(format!("{}/rooms/{room}/", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET room: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("room body: {e}"))
    }

    /// The signed stream tokens the room page subscribes to, read from its HTML.
    pub async fn room_tokens(&self, room: i32) -> Vec<String> {
        let page = self.room_page(room).await;
        let streams = page
            .split("streams=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("room page has a subscription element:\n{page}"));
        streams.split(' ').map(str::to_owned).collect()
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        self.server.abort();
        if self.postgres.is_none() {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// The `<li>` the chat's message component renders for message `id` of `room`, by
/// `author` (`None`: anonymous), its text as escaped in the page.
pub fn message_li(room: i32, id: i32, author: Option<&str>, escaped_text: &str) -> String {
    let author = author.unwrap_or("anonymous");
    format!(
        "<li id=\"message_{id}\">\n  <b class=\"author\">{author}</b>\n  <span class=\"text\">{escaped_text}</span>\n  \
         <details class=\"edit\">\n    <summary>Edit</summary>\n    \
         <form id=\"edit_message_{id}\" method=\"post\" action=\"/rooms/{room}/messages/{id}/edit\">\n      \
         <input name=\"text\" value=\"{escaped_text}\" maxlength=\"2000\" required autocomplete=\"off\">\n      \
         <button type=\"submit\">Save</button>\n    </form>\n  </details>\n  \
         <form class=\"delete\" method=\"post\" action=\"/rooms/{room}/messages/{id}/delete\">\n    \
         <button type=\"submit\">Delete</button>\n  </form>\n</li>\n"
    )
}
