//! A WebSocket client speaking turbo-model's protocol, with bounded waits.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for a frame that should come.
pub const WAIT: Duration = Duration::from_secs(5);

/// One client connection.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// How long it waits for a frame that should come: [`WAIT`] unless made with
    /// [`connect_patient`](Self::connect_patient).
    patience: Duration,
}

/// What a read produced.
#[derive(Debug)]
pub enum Received {
    /// A JSON text frame.
    Json(Value),
    /// The server closed the connection, with this code and reason.
    Closed(Option<(u16, String)>),
}

impl Client {
    /// Connects and reads the `hello` frame.
    ///
    /// # Panics
    ///
    /// If the connection fails or does not start with `hello`.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with_hello(url).await.0
    }

    /// Connects; returns the client and its `hello` frame (which holds the connection
    /// token).
    ///
    /// # Panics
    ///
    /// If the connection fails or does not start with `hello`.
    pub async fn connect_with_hello(url: &str) -> (Self, Value) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let request = url
            .into_client_request()
            .unwrap_or_else(|e| panic!("request for {url}: {e}"));
        Self::open(request, WAIT).await
    }

    /// Connects and reads the `hello` frame, and waits up to `patience` for every frame
    /// that should come (the `hello`, subscription replies, [`next`](Self::next)): for
    /// tests that load the server on purpose, where a reply may come late and still
    /// come.
    ///
    /// # Panics
    ///
    /// If the connection fails or does not start with `hello`.
    pub async fn connect_patient(url: &str, patience: Duration) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let request = url
            .into_client_request()
            .unwrap_or_else(|e| panic!("request for {url}: {e}"));
        Self::open(request, patience).await.0
    }

    /// Connects sending a `Cookie` header, like a browser with a session.
    ///
    /// # Panics
    ///
    /// If the connection fails.
    pub async fn connect_with_cookie(url: &str, cookie: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url
            .into_client_request()
            .unwrap_or_else(|e| panic!("request for {url}: {e}"));
        request.headers_mut().insert(
            "cookie",
            cookie
                .parse()
                .unwrap_or_else(|e| panic!("cookie header {cookie}: {e}")),
        );
        Self::open(request, WAIT).await.0
    }

    async fn open(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
        patience: Duration,
    ) -> (Self, Value) {
        let url = request.uri().to_string();
        let (socket, _) = connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let mut client = Self { socket, patience };
        let hello = client.json().await;
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        (client, hello)
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.socket
            .send(Message::text(text.into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Sends a raw message.
    pub async fn send(&mut self, message: Message) {
        self.socket
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Subscribes and waits for the `subscribed` reply, which it returns.
    pub async fn subscribe(&mut self, token: &str) -> Value {
        self.send_text(serde_json::json!({"type": "subscribe", "stream": token}).to_string())
            .await;
        let reply = self.json().await;
        assert_eq!(reply["type"], "subscribed", "subscribe reply: {reply}");
        reply
    }

    /// Subscribes resuming after `(epoch, seq)` and returns the `subscribed` reply; the
    /// replayed frames follow it.
    pub async fn resume(&mut self, token: &str, epoch: &str, seq: u64) -> Value {
        self.send_text(
            serde_json::json!({
                "type": "subscribe",
                "stream": token,
                "since": {"epoch": epoch, "seq": seq}
            })
            .to_string(),
        )
        .await;
        let reply = self.json().await;
        assert_eq!(reply["type"], "subscribed", "subscribe reply: {reply}");
        reply
    }

    /// Subscribes as a rendered page does, from its `since` attribute (`t` and the time
    /// its request began), and returns the `subscribed` reply: the stream's position at
    /// that time. What was broadcast after it follows.
    ///
    /// # Panics
    ///
    /// If `since` is not of that form.
    pub async fn subscribe_from(&mut self, token: &str, since: &str) -> Value {
        let time: u64 = since
            .strip_prefix('t')
            .and_then(|time| time.parse().ok())
            .unwrap_or_else(|| panic!("a page's since is `t<microseconds>`: {since:?}"));
        self.send_text(
            serde_json::json!({"type": "subscribe", "stream": token, "since": {"time": time}})
                .to_string(),
        )
        .await;
        let reply = self.json().await;
        assert_eq!(reply["type"], "subscribed", "subscribe reply: {reply}");
        reply
    }

    /// Connects sending this `Origin`; returns the HTTP status when the upgrade is
    /// refused.
    pub async fn connect_from(url: &str, origin: &str) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url
            .into_client_request()
            .unwrap_or_else(|e| panic!("request for {url}: {e}"));
        request.headers_mut().insert(
            "origin",
            origin
                .parse()
                .unwrap_or_else(|e| panic!("origin header {origin}: {e}")),
        );
        match connect_async(request).await {
            Ok((socket, _)) => {
                let mut client = Self {
                    socket,
                    patience: WAIT,
                };
                let hello = client.json().await;
                assert_eq!(hello["type"], "hello");
                Ok(client)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    /// The next frame, or what ended the connection; panics after the client's patience ([`WAIT`] by default).
    pub async fn next(&mut self) -> Received {
        self.next_within(self.patience).await
    }

    /// The next frame, or what ended the connection; panics after `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Received {
        loop {
            let frame = tokio::time::timeout(wait, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {wait:?}"));
            match frame {
                Some(Ok(Message::Text(text))) => return Received::Json(frame_value(&text)),
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(b))) => panic!("unexpected binary frame {b:?}"),
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next WebSocket message of any kind, pings, pongs and close frames included;
    /// `None` once the connection has ended. Panics after `wait`.
    pub async fn message_within(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, self.socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {wait:?}"))
            .and_then(Result::ok)
    }

    /// The next JSON frame; panics if the connection closes instead.
    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Received::Json(v) => v,
            Received::Closed(c) => panic!("connection closed ({c:?}) while a frame was expected"),
        }
    }

    /// Asserts that nothing arrives within `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(frame) = tokio::time::timeout(quiet, self.socket.next()).await {
            panic!("expected no frame, got {frame:?}");
        }
    }
}

/// A frame as one JSON value: its header, and for a broadcast the element that follows
/// the header's newline as `html` (`""` for a skip), the shape the tests compare.
///
/// # Panics
///
/// If the header is not JSON.
pub fn frame_value(text: &str) -> Value {
    let (header, html) = match text.split_once('\n') {
        Some((header, html)) => (header, Some(html)),
        None => (text, None),
    };
    let mut value: Value = serde_json::from_str(header)
        .unwrap_or_else(|e| panic!("frame header is JSON ({e}): {text}"));
    let broadcast = matches!(value["type"].as_str(), Some("message" | "skip"));
    if let (true, Some(object)) = (broadcast, value.as_object_mut()) {
        object.insert(
            "html".to_owned(),
            Value::String(html.unwrap_or_default().to_owned()),
        );
    }
    value
}
