//! What turbo-rails and turbo-django users reach for, through the chat over real sockets:
//! Turbo Stream responses, broadcasts to others, authorization of private rooms.

use std::time::Duration;

use serde_json::json;
use turbo_model_tests::server::{ChatServer, turbo};

/// The `<li>` of an anonymous message.
fn message_li(room: i32, id: i32, escaped_text: &str) -> String {
    turbo_model_tests::server::message_li(room, id, None, escaped_text)
}
use turbo_model_tests::sse::SseClient;
use turbo_model_tests::ws::Client;

const TURBO_ACCEPT: &str = "text/vnd.turbo-stream.html, text/html, application/xhtml+xml";

fn form(room: i32) -> String {
    format!(
        "<form id=\"message-form\" class=\"send\" method=\"post\" action=\"/rooms/{room}/messages/\">\n  <input name=\"text\" placeholder=\"Say something\" maxlength=\"2000\" required autocomplete=\"off\" autofocus>\n  <button type=\"submit\">Send</button>\n</form>\n"
    )
}

/// Connects, keeping the connection token from `hello`, and subscribes to the room.
async fn page_connection(server: &ChatServer, room: i32) -> (Client, String) {
    let (mut client, hello) = Client::connect_with_hello(&server.ws_url()).await;
    let token = server.room_tokens(room).await.remove(0);
    client.subscribe(&token).await;
    let connection = hello["connection"].as_str().expect("token").to_owned();
    (client, connection)
}

#[tokio::test]
async fn a_turbo_form_gets_a_turbo_stream_response_and_the_others_get_the_broadcast() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let (mut sender, sender_connection) = page_connection(&server, room).await;
    let (mut other, _) = page_connection(&server, room).await;
    let id = server.first_id();

    let response = server
        .http()
        .post(format!("{}/rooms/{room}/messages/", server.base_url))
        .header("accept", TURBO_ACCEPT)
        .header("x-turbo-model-connection", &sender_connection)
        .form(&[("text", "from the sender")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/vnd.turbo-stream.html; charset=utf-8"
    );
    assert_eq!(
        response.text().await.expect("body"),
        format!(
            "<turbo-stream action=\"append\" target=\"messages\"><template>{}</template></turbo-stream><turbo-stream action=\"replace\" target=\"message-form\"><template>{}</template></turbo-stream>",
            message_li(room, id, "from the sender"),
            form(room)
        )
    );

    // The other page gets the append; the sender's page a skip with the same number.
    let stream = format!("room:{room}");
    assert_eq!(
        other.json().await,
        json!({
            "type": "message",
            "stream": stream,
            "seq": 1,
            "html": format!("<turbo-stream action=\"append\" target=\"messages\"><template>{}</template></turbo-stream>", message_li(room, id, "from the sender"))
        })
    );
    assert_eq!(
        sender.json().await,
        json!({"type": "skip", "stream": stream, "seq": 1, "html": ""})
    );

    // Deleting works the same way.
    let response = server
        .http()
        .post(format!(
            "{}/rooms/{room}/messages/{id}/delete",
            server.base_url
        ))
        .header("accept", TURBO_ACCEPT)
        .header("x-turbo-model-connection", &sender_connection)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.text().await.expect("body"),
        format!("<turbo-stream action=\"remove\" target=\"message_{id}\"></turbo-stream>")
    );
    assert_eq!(
        other.json().await["html"],
        format!("<turbo-stream action=\"remove\" target=\"message_{id}\"></turbo-stream>")
    );
    assert_eq!(sender.json().await["type"], "skip");
}

#[tokio::test]
async fn an_edit_answers_the_sender_with_a_replace_and_replaces_it_for_the_others() {
    use turbo_model::Action;
    use turbo_model::testing::StreamResponse;

    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let id = server.first_id();
    let post = server
        .http()
        .post(format!("{}/rooms/{room}/messages/", server.base_url))
        .header("cookie", "chat_user=ada")
        .form(&[("text", "first <draft>")])
        .send()
        .await
        .expect("request");
    assert_eq!(post.status(), 303);
    server.turbo.settled().await;
    let (mut sender, sender_connection) = page_connection(&server, room).await;
    let (mut other, _) = page_connection(&server, room).await;
    let edit = |text: &'static str, message: i32, turbo: bool| {
        let mut request = server
            .http()
            .post(format!(
                "{}/rooms/{room}/messages/{message}/edit",
                server.base_url
            ))
            .header("x-turbo-model-connection", &sender_connection)
            .form(&[("text", text)]);
        if turbo {
            request = request.header("accept", TURBO_ACCEPT);
        }
        request.send()
    };

    let response = edit("final & \"done\"", id, true).await.expect("request");
    let content_type = response.headers()["content-type"]
        .to_str()
        .ok()
        .map(str::to_owned);
    let body = response.text().await.expect("body");
    let stream = StreamResponse::parse(content_type.as_deref(), &body).expect("a turbo-stream");
    stream.assert_count(1);
    let li = turbo_model_tests::server::message_li(
        room,
        id,
        Some("ada"),
        "final &amp; &quot;done&quot;",
    );
    assert_eq!(
        stream
            .assert_one(Action::Replace, &format!("message_{id}"))
            .content(),
        Some(li.as_str())
    );
    // The others get the same replace; the sender a skip.
    assert_eq!(
        other.json().await["html"],
        format!(
            "<turbo-stream action=\"replace\" target=\"message_{id}\"><template>{li}</template></turbo-stream>"
        )
    );
    assert_eq!(sender.json().await["type"], "skip");

    // Without Turbo: a redirect. Bad input: an error, and nothing sent.
    let plain = edit("plain", id, false).await.expect("request");
    assert_eq!(plain.status(), 303);
    assert_eq!(other.json().await["type"], "message");
    for (text, message, status) in [("   ", id, 422), ("x", id + 999, 404)] {
        let response = edit(text, message, true).await.expect("request");
        assert_eq!(response.status(), status, "{text:?} on {message}");
    }
    server.turbo.settled().await;
    other.expect_silence(Duration::from_millis(200)).await;
    assert!(server.room_page(room).await.contains(">plain</span>"));
}

#[tokio::test]
async fn without_turbo_the_form_redirects_and_everyone_gets_the_broadcast() {
    let server = ChatServer::start().await;
    let room = server.create_room("Lobby").await;
    let (mut sender, sender_connection) = page_connection(&server, room).await;
    let response = server
        .http()
        .post(format!("{}/rooms/{room}/messages/", server.base_url))
        .header("accept", "text/html")
        .header("x-turbo-model-connection", &sender_connection)
        .form(&[("text", "no javascript")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("/rooms/{room}/"));
    // Skipped: the sender named its connection, and the hook leaves it out; its page
    // reloads through the redirect.
    assert_eq!(sender.json().await["type"], "skip");

    // A forged or foreign connection token leaves nobody out.
    let (mut a, _) = page_connection(&server, room).await;
    for forged in ["1.AAAA", "not-a-token", ""] {
        server
            .http()
            .post(format!("{}/rooms/{room}/messages/", server.base_url))
            .header("x-turbo-model-connection", forged)
            .form(&[("text", "forged")])
            .send()
            .await
            .expect("request");
        assert_eq!(a.json().await["type"], "message", "token {forged:?}");
    }
}

#[tokio::test]
async fn a_private_room_admits_only_its_user() {
    let server = ChatServer::start().await;
    let response = server
        .http()
        .post(format!("{}/rooms/", server.base_url))
        .form(&[("name", "Secret"), ("private_to", "alice")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 303);
    let room = server.first_id();
    let page = |cookie: Option<&'static str>| {
        let mut request = server
            .http()
            .get(format!("{}/rooms/{room}/", server.base_url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request
    };
    let refused = page(None).send().await.expect("request");
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.text().await.expect("body"),
        format!("room {room} is private")
    );
    assert_eq!(
        page(Some("chat_user=bob"))
            .send()
            .await
            .expect("request")
            .status(),
        403
    );
    let alice = page(Some("chat_user=alice")).send().await.expect("request");
    assert_eq!(alice.status(), 200);
    let html = alice.text().await.expect("body");
    let token = html
        .split("streams=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("alice's page subscribes")
        .to_owned();

    // The token alone is not enough: the subscription asks the room's rule.
    let mut stranger = Client::connect(&server.ws_url()).await;
    stranger
        .send_text(json!({"type": "subscribe", "stream": token}).to_string())
        .await;
    assert_eq!(
        stranger.json().await,
        json!({
            "type": "error",
            "code": "forbidden",
            "message": format!("subscription to `room:{room}` refused: room {room} is private"),
            "token": token
        })
    );
    let mut bob = Client::connect_with_cookie(&server.ws_url(), "chat_user=bob").await;
    bob.send_text(json!({"type": "subscribe", "stream": token}).to_string())
        .await;
    assert_eq!(bob.json().await["code"], "forbidden");
    let mut alice = Client::connect_with_cookie(&server.ws_url(), "chat_user=alice").await;
    assert_eq!(
        alice.subscribe(&token).await["stream"],
        format!("room:{room}")
    );

    let sse_url = format!("{}/turbo-model/sse?stream={token}", server.base_url);
    assert_eq!(SseClient::connect(&sse_url, None).await.err(), Some(403));

    let post = server
        .http()
        .post(format!("{}/rooms/{room}/messages/", server.base_url))
        .header("cookie", "chat_user=bob")
        .form(&[("text", "let me in")])
        .send()
        .await
        .expect("request");
    assert_eq!(post.status(), 403);
    alice.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn refreshes_are_debounced_and_carry_the_request_id() {
    let server = turbo_model_tests::standalone::Standalone::start(
        turbo_model::Turbo::builder().refresh_debounce(Duration::from_millis(200)),
    )
    .await;
    let token = server.token("board:1");
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&token).await;
    for n in 0..5 {
        turbo_model::stream("board:1")
            .expect("a valid stream name")
            .refresh()
            .morph()
            .request_id(format!("req-{n}"))
            .send_with(&server.turbo)
            .expect("sent");
    }
    // Five requests' refreshes: one goes out, and no page may skip it as its own.
    let frame = client.json().await;
    assert_eq!(
        frame["html"], r#"<turbo-stream action="refresh" method="morph"></turbo-stream>"#,
        "one refresh, for everyone"
    );
    assert_eq!(frame["seq"], 1);
    client.expect_silence(Duration::from_millis(400)).await;
    // One request's refreshes: one goes out, with its request id.
    for _ in 0..3 {
        turbo_model::stream("board:1")
            .expect("a valid stream name")
            .refresh()
            .morph()
            .request_id("req-9")
            .send_with(&server.turbo)
            .expect("sent");
    }
    let frame = client.json().await;
    assert_eq!(
        frame["html"],
        r#"<turbo-stream action="refresh" method="morph" request-id="req-9"></turbo-stream>"#,
        "one refresh, the requester's"
    );
    assert_eq!(frame["seq"], 2);
    client.expect_silence(Duration::from_millis(400)).await;
    turbo_model::stream("board:1")
        .expect("a valid stream name")
        .refresh()
        .debounce(Duration::ZERO)
        .send_with(&server.turbo)
        .expect("sent");
    assert_eq!(client.json().await["seq"], 3, "ZERO sends at once");
    let _ = turbo();
}
