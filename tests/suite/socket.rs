//! The chat over a real socket: a real axum server on an ephemeral port, real
//! tokio-tungstenite clients, messages posted through the real forms.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use turbo_model::web::protocol::MAX_INBOUND_BYTES;
use turbo_model_tests::server::{ChatServer, Serving, turbo};

/// The `<li>` of an anonymous message.
fn message_li(room: i32, id: i32, escaped_text: &str) -> String {
    turbo_model_tests::server::message_li(room, id, None, escaped_text)
}
use turbo_model_tests::ws::{Client, Received};

async fn subscribed_client(server: &ChatServer, room: i32) -> Client {
    let tokens = server.room_tokens(room).await;
    assert_eq!(tokens.len(), 1, "the room page subscribes to one stream");
    let mut client = Client::connect(&server.ws_url()).await;
    let reply = client.subscribe(&tokens[0]).await;
    assert_eq!(reply["stream"], format!("room:{room}"));
    client
}

#[tokio::test]
async fn message_created_in_room_reaches_every_subscriber_as_the_rendered_component() {
    for serving in [Serving::Listener, Serving::Plain] {
        message_reaches_every_subscriber(ChatServer::start_serving(serving).await).await;
    }
}

async fn message_reaches_every_subscriber(server: ChatServer) {
    let room = server.create_room("Lobby").await;
    let mut a = subscribed_client(&server, room).await;
    let mut b = subscribed_client(&server, room).await;

    assert_eq!(
        server
            .post_message(room, "  hello <world> & \"you\"  ")
            .await,
        303
    );

    let html = format!(
        "<turbo-stream action=\"append\" target=\"messages\"><template>{}</template></turbo-stream>",
        message_li(
            room,
            server.first_id(),
            "hello &lt;world&gt; &amp; &quot;you&quot;"
        )
    );
    let expected =
        json!({"type": "message", "stream": format!("room:{room}"), "seq": 1, "html": html});
    assert_eq!(a.json().await, expected);
    assert_eq!(b.json().await, expected);
}

#[tokio::test]
async fn deleted_message_is_removed_from_every_subscriber() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    assert_eq!(server.post_message(room, "first").await, 303);
    let mut client = subscribed_client(&server, room).await;

    let id = server.first_id();
    assert_eq!(server.delete_message(room, id).await, 303);

    // The append of the message was the stream's first broadcast; the remove is its second.
    assert_eq!(
        client.json().await,
        json!({
            "type": "message",
            "stream": format!("room:{room}"),
            "seq": 2,
            "html": format!("<turbo-stream action=\"remove\" target=\"message_{id}\"></turbo-stream>")
        })
    );
    assert!(
        !server
            .room_page(room)
            .await
            .contains(&format!("message_{id}"))
    );
}

#[tokio::test]
async fn two_rooms_are_isolated() {
    let server = ChatServer::start().await;
    let lobby = server.create_room("Lobby").await;
    let other = server.create_room("Other").await;
    let mut in_lobby = subscribed_client(&server, lobby).await;
    let mut in_other = subscribed_client(&server, other).await;

    assert_eq!(server.post_message(other, "for other only").await, 303);
    let frame = in_other.json().await;
    assert_eq!(frame["stream"], format!("room:{other}"));
    in_lobby.expect_silence(Duration::from_millis(300)).await;

    assert_eq!(server.post_message(lobby, "for lobby").await, 303);
    let frame = in_lobby.json().await;
    assert_eq!(frame["stream"], format!("room:{lobby}"));
    assert_eq!(frame["seq"], 1);
    in_other.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn tampered_token_is_refused_and_the_connection_keeps_working() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let token = server.room_tokens(room).await.remove(0);
    let (_, signature) = token.split_once('.').expect("token has a dot");
    // "room:2" in base64url, with room 1's signature.
    let forged = format!("cm9vbToy.{signature}");
    let mut client = Client::connect(&server.ws_url()).await;

    for (bad, message) in [
        (
            forged.as_str(),
            "stream token refused: the token's signature does not match its stream name",
        ),
        (
            "room:1",
            "stream token refused: the token is malformed: expected `name.signature`",
        ),
        ("", "stream token refused: the token is empty"),
    ] {
        client
            .send_text(json!({"type": "subscribe", "stream": bad}).to_string())
            .await;
        let reply = client.json().await;
        assert_eq!(
            reply,
            json!({"type": "error", "code": "invalid_token", "message": message, "token": bad}),
            "for token {bad:?}"
        );
    }

    for cut in 1..=4 {
        let truncated = &token[..token.len() - cut];
        client
            .send_text(json!({"type": "subscribe", "stream": truncated}).to_string())
            .await;
        let reply = client.json().await;
        assert_eq!(
            reply["code"], "invalid_token",
            "truncated by {cut}: {reply}"
        );
    }

    let reply = client.subscribe(&token).await;
    assert_eq!(reply["stream"], format!("room:{room}"));
    assert_eq!(server.post_message(room, "still works").await, 303);
    assert_eq!(client.json().await["type"], "message");
}

#[tokio::test]
async fn inbound_message_over_64_kib_closes_with_1009_and_the_server_keeps_serving() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;

    let mut at_limit = Client::connect(&server.ws_url()).await;
    at_limit.send_text("x".repeat(MAX_INBOUND_BYTES)).await;
    assert_eq!(
        at_limit.json().await["code"],
        "bad_request",
        "64 KiB is still read"
    );

    let mut over = Client::connect(&server.ws_url()).await;
    over.send_text("x".repeat(MAX_INBOUND_BYTES + 1)).await;
    match over.next().await {
        Received::Closed(Some((code, reason))) => {
            assert_eq!(code, 1009);
            assert_eq!(reason, "message too big: the limit is 65536 bytes");
        }
        other => panic!("expected close 1009, got {other:?}"),
    }

    let mut client = subscribed_client(&server, room).await;
    assert_eq!(server.post_message(room, "after the big one").await, 303);
    assert_eq!(client.json().await["type"], "message");
}

#[tokio::test]
async fn malformed_frames_get_error_frames_not_a_dropped_connection() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let mut client = Client::connect(&server.ws_url()).await;

    client.send_text("not json").await;
    assert_eq!(
        client.json().await,
        json!({
            "type": "error",
            "code": "bad_request",
            "message": "expected {\"type\":\"subscribe\"|\"unsubscribe\",\"stream\":\"<token>\"} or {\"type\":\"pong\"}: a request is a JSON object"
        })
    );
    client.send_text(r#"{"type":"dance","stream":"x"}"#).await;
    let reply = client.json().await;
    assert_eq!(reply["code"], "bad_request");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown variant `dance`"),
        "{reply}"
    );
    client.send(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(
        client.json().await,
        json!({"type": "error", "code": "binary_not_supported", "message": "binary frames are not accepted; send JSON text"})
    );

    let token = server.room_tokens(room).await.remove(0);
    client.subscribe(&token).await;
    assert_eq!(server.post_message(room, "fine").await, 303);
    assert_eq!(client.json().await["seq"], 1);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let token = server.room_tokens(room).await.remove(0);
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&token).await;
    client
        .send_text(json!({"type": "unsubscribe", "stream": token}).to_string())
        .await;
    assert_eq!(
        client.json().await,
        json!({"type": "unsubscribed", "stream": format!("room:{room}"), "token": token})
    );
    assert_eq!(server.post_message(room, "nobody listens").await, 303);
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    let server = ChatServer::start().await;
    let mut client = Client::connect(&server.ws_url()).await;
    let limit = turbo_model::web::DEFAULT_MAX_SUBSCRIPTIONS;
    for i in 0..limit {
        let token = turbo()
            .sign(&format!("limit-test:{i}"))
            .expect("valid name");
        client.subscribe(&token).await;
    }
    let one_more = turbo().sign("limit-test:extra").expect("valid name");
    client
        .send_text(json!({"type": "subscribe", "stream": one_more}).to_string())
        .await;
    assert_eq!(
        client.json().await,
        json!({
            "type": "error",
            "code": "too_many_subscriptions",
            "message": format!("a connection may subscribe to at most {limit} streams"),
            "token": one_more
        })
    );
}

#[tokio::test]
async fn bad_form_input_is_refused_and_broadcasts_nothing() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let mut client = subscribed_client(&server, room).await;

    let response = server
        .http()
        .post(format!("{}/rooms/{room}/messages/", server.base_url))
        .form(&[("text", "   ")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 422);
    assert_eq!(response.text().await.expect("body"), "the message is empty");

    let long = "x".repeat(2001);
    assert_eq!(server.post_message(room, &long).await, 422);
    assert_eq!(server.post_message(room + 100, "no such room").await, 404);
    let missing_field = server
        .http()
        .post(format!("{}/rooms/{room}/messages/", server.base_url))
        .form(&[("nope", "x")])
        .send()
        .await
        .expect("request");
    assert_eq!(missing_field.status(), 422);
    assert_eq!(
        server.delete_message(room, server.first_id() + 999).await,
        404
    );

    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_named_stream_carries_broadcasts_from_code_outside_the_orm() {
    let server = ChatServer::start().await;
    let name = format!("orders:{}", server.first_id());
    let token = turbo().sign(&name).expect("valid name");
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&token).await;

    turbo_model::stream(name.as_str())
        .expect("a valid stream name")
        .action(
            turbo_model::Action::Replace,
            Some(turbo_model::Content::text("shipped & paid")),
        )
        .target("order-status")
        .send_with(&server.turbo)
        .expect("sent");
    turbo_model::stream(name.as_str())
        .expect("a valid stream name")
        .refresh()
        .morph()
        .preserve_scroll()
        .send_with(&server.turbo)
        .expect("sent");

    assert_eq!(
        client.json().await,
        json!({
            "type": "message",
            "stream": name,
            "seq": 1,
            "html": "<turbo-stream action=\"replace\" target=\"order-status\"><template>shipped &amp; paid</template></turbo-stream>"
        })
    );
    assert_eq!(
        client.json().await["html"],
        "<turbo-stream action=\"refresh\" method=\"morph\" scroll=\"preserve\"></turbo-stream>"
    );
}

#[tokio::test]
async fn a_flood_of_requests_is_rate_limited_and_a_flood_of_refusals_disconnected() {
    let server = ChatServer::start().await;
    let mut client = Client::connect(&server.ws_url()).await;
    for _ in 0..160 {
        client.send_text(r#"{"type":"pong"}"#).await;
    }
    let mut limited = 0;
    while let Received::Json(reply) =
        tokio::time::timeout(Duration::from_millis(500), client.next())
            .await
            .unwrap_or(Received::Closed(None))
    {
        assert_eq!(
            reply,
            json!({
                "type": "error",
                "code": "rate_limited",
                "message": "at most 20 requests per second (bursts of 120); this one was dropped"
            })
        );
        limited += 1;
    }
    assert!(
        (30..=40).contains(&limited),
        "{limited} of 160 over a burst of 120"
    );

    let mut flooder = Client::connect(&server.ws_url()).await;
    for _ in 0..100 {
        flooder.send_text("not json").await;
    }
    for _ in 0..99 {
        assert_eq!(flooder.json().await["code"], "bad_request");
    }
    match flooder.next().await {
        Received::Closed(Some((code, reason))) => {
            assert_eq!((code, reason.as_str()), (1008, "too many refused requests"));
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[tokio::test]
async fn forms_posted_from_another_site_are_refused() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let mut client = subscribed_client(&server, room).await;
    let url = format!("{}/rooms/{room}/messages/", server.base_url);
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let response = server
            .http()
            .post(&url)
            .header(header, value)
            .form(&[("text", "forged")])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 403, "{header}: {value}");
        assert_eq!(
            response.text().await.expect("body"),
            "cross-site request refused"
        );
    }
    let same_site = server
        .http()
        .post(&url)
        .header("sec-fetch-site", "same-origin")
        .header("origin", server.base_url.as_str())
        .form(&[("text", "genuine")])
        .send()
        .await
        .expect("request");
    assert_eq!(same_site.status(), 303);
    let frame = client.json().await;
    assert!(
        frame["html"]
            .as_str()
            .unwrap_or_default()
            .contains("genuine"),
        "{frame}"
    );
    client.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn the_client_script_is_named_by_its_content_and_cached_for_good() {
    let server = ChatServer::start().await;
    let room = server.create_room("Cached").await;
    let page = server.room_page(room).await;
    let src = page
        .split("<script type=\"module\" src=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|src| src.starts_with("/turbo-model/"))
        .unwrap_or_else(|| panic!("the page loads the client script:\n{page}"));
    assert!(
        src.starts_with("/turbo-model/client-") && src.ends_with(".js"),
        "{src}"
    );
    let response = server
        .http()
        .get(format!("{}{src}", server.base_url))
        .send()
        .await
        .expect("GET the client script");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(
        response.text().await.expect("body"),
        turbo_model::web::CLIENT_JS
    );
    let old = server
        .http()
        .get(format!("{}/turbo-model/client.js", server.base_url))
        .send()
        .await
        .expect("GET the unversioned path");
    assert_eq!(old.status(), 404, "only the versioned name is served");
}

#[tokio::test]
async fn a_text_message_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = ChatServer::start().await;
    let mut client = Client::connect(&server.ws_url()).await;
    let invalid = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    client.send(Message::Frame(invalid)).await;
    match client.next().await {
        Received::Closed(Some((code, reason))) => {
            assert_eq!(
                (code, reason.as_str()),
                (1007, "text messages must be UTF-8")
            );
        }
        other => panic!("expected close 1007, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refusal_does_not_echo_a_token_longer_than_any_the_server_signs() {
    let server = ChatServer::start().await;
    let mut client = Client::connect(&server.ws_url()).await;
    let long = "a".repeat(60 * 1024);
    client
        .send_text(json!({"type": "subscribe", "stream": long}).to_string())
        .await;
    let reply = client.json().await;
    assert_eq!(
        reply,
        json!({
            "type": "error",
            "code": "invalid_token",
            "message": "stream token refused: the token is 61440 bytes long; at most 512 are accepted"
        })
    );
    let short = "not-a-token";
    client
        .send_text(json!({"type": "subscribe", "stream": short}).to_string())
        .await;
    assert_eq!(client.json().await["token"], short, "a short one is echoed");
}

#[tokio::test]
async fn the_chat_tells_browsers_not_to_sniff_and_what_may_run() {
    let server = ChatServer::start().await;
    let room = server.create_room("Headers").await;
    for path in ["/".to_owned(), format!("/rooms/{room}/")] {
        let response = server
            .http()
            .get(format!("{}{path}", server.base_url))
            .send()
            .await
            .expect("GET");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(
            header("content-security-policy"),
            chat::CONTENT_SECURITY_POLICY,
            "{path}"
        );
    }
}

/// A named stream with a subscribed client.
async fn named_stream_client(server: &ChatServer) -> (String, Client) {
    let name = format!("orders:{}", server.first_id());
    let token = turbo().sign(&name).expect("valid name");
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&token).await;
    (name, client)
}

fn broadcast_text(server: &ChatServer, stream: &str, text: String) {
    turbo_model::stream(stream)
        .expect("a valid stream name")
        .action(
            turbo_model::Action::Replace,
            Some(turbo_model::Content::text(&text)),
        )
        .target("t")
        .send_with(&server.turbo)
        .expect("sent");
}

fn replace_html(text: &str) -> String {
    format!(
        "<turbo-stream action=\"replace\" target=\"t\"><template>{text}</template></turbo-stream>"
    )
}

// The wire tests run on both ways of serving: sockets the hub writes to (the crate's
// listener) and sockets only their connection's task writes to (plain axum).

#[tokio::test]
async fn broadcasts_larger_than_the_socket_buffers_arrive_whole_and_in_order() {
    for serving in [Serving::Listener, Serving::Plain] {
        large_broadcasts_arrive_whole(ChatServer::start_serving(serving).await).await;
    }
}

async fn large_broadcasts_arrive_whole(server: ChatServer) {
    let (name, mut client) = named_stream_client(&server).await;
    // Three frames of 300 000 bytes queued at once, to a client that does not read for
    // a while: the socket takes them in pieces, written where the last write stopped.
    let texts: Vec<String> = (0..3_u8)
        .map(|i| char::from(b'a' + i).to_string().repeat(300_000))
        .collect();
    for text in &texts {
        broadcast_text(&server, &name, text.clone());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (seq, text) in (1_u64..).zip(&texts) {
        assert_eq!(
            client.json().await,
            json!({"type": "message", "stream": name, "seq": seq, "html": replace_html(text)})
        );
    }
}

#[tokio::test]
async fn pings_during_a_burst_get_their_pongs_and_never_break_a_frame() {
    for serving in [Serving::Listener, Serving::Plain] {
        pongs_between_whole_frames(ChatServer::start_serving(serving).await).await;
    }
}

async fn pongs_between_whole_frames(server: ChatServer) {
    let (name, mut client) = named_stream_client(&server).await;
    const PINGS: usize = 50;
    const FRAMES: usize = 2 * PINGS;
    // Each ping between two broadcasts of 5 kB: the pongs go out while frames are queued.
    for i in 0..PINGS {
        client
            .send(Message::Ping(format!("ping {i}").into_bytes().into()))
            .await;
        broadcast_text(&server, &name, "x".repeat(5_000));
        broadcast_text(&server, &name, "y".repeat(5_000));
    }
    let (mut frames, mut pongs) = (Vec::new(), Vec::new());
    while frames.len() < FRAMES || pongs.len() < PINGS {
        match client.message_within(turbo_model_tests::ws::WAIT).await {
            Some(Message::Text(text)) => frames.push(turbo_model_tests::ws::frame_value(&text)),
            Some(Message::Pong(payload)) => {
                pongs.push(String::from_utf8_lossy(&payload).into_owned())
            }
            other => panic!("expected frames and pongs, got {other:?}"),
        }
    }
    let expected_pongs: Vec<String> = (0..PINGS).map(|i| format!("ping {i}")).collect();
    assert_eq!(pongs, expected_pongs, "every ping answered, in order");
    for (seq, frame) in (1_u64..).zip(&frames) {
        let text = if seq % 2 == 1 { "x" } else { "y" }.repeat(5_000);
        assert_eq!(
            frame,
            &json!({"type": "message", "stream": name, "seq": seq, "html": replace_html(&text)}),
            "frame {seq}: in order, whole"
        );
    }
}

#[tokio::test]
async fn a_close_from_the_client_gets_its_reply() {
    for serving in [Serving::Listener, Serving::Plain] {
        close_replied(ChatServer::start_serving(serving).await).await;
    }
}

async fn close_replied(server: ChatServer) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let mut client = Client::connect(&server.ws_url()).await;
    client
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "leaving".into(),
        })))
        .await;
    match client.message_within(turbo_model_tests::ws::WAIT).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected the close reply, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_that_are_not_websocket_openings_are_told_why() {
    let server = ChatServer::start().await;
    let url = server.ws_url().replacen("ws://", "http://", 1);
    let http = reqwest::Client::new();
    let plain = http.get(&url).send().await.expect("GET");
    assert_eq!(plain.status(), 400);
    assert_eq!(
        plain.text().await.expect("body"),
        "the Connection header does not include 'upgrade'"
    );
    let old = http
        .get(&url)
        .header("connection", "keep-alive, Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("GET");
    assert_eq!(old.status(), 426);
    assert_eq!(old.headers()["sec-websocket-version"], "13");
}
