//! The delivery contract at the edges: a broker that goes away, clients that stall or
//! flood, a server that stops, a request cancelled mid-commit, keys that change, access
//! that is revoked. Each test here failed before the change it came with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use turbo_model::Turbo;
use turbo_model::backend::Redis;
use turbo_model::web::Subscriptions;
use turbo_model_tests::proxy::Proxy;
use turbo_model_tests::redis_server::TestRedis;
use turbo_model_tests::standalone::Standalone;
use turbo_model_tests::ws::{Client, Received};

fn html(n: u64) -> String {
    format!(
        "<turbo-stream action=\"append\" target=\"log\"><template><p>{n}</p></template></turbo-stream>"
    )
}

/// The next frame that is not a heartbeat.
async fn next_frame(client: &mut Client, within: Duration) -> Received {
    loop {
        match client.next_within(within).await {
            Received::Json(frame) if frame["type"] == "ping" => {
                client.send_text(r#"{"type":"pong"}"#).await;
            }
            other => return other,
        }
    }
}

async fn message(client: &mut Client) -> Value {
    match next_frame(client, Duration::from_secs(10)).await {
        Received::Json(frame) => frame,
        Received::Closed(close) => panic!("closed ({close:?}) while a frame was expected"),
    }
}

fn redis_server(redis: &TestRedis, prefix: &str) -> turbo_model::Builder {
    Turbo::builder().backend(
        Redis::with_prefix(&redis.url(), prefix)
            .expect("url")
            .publish_deadline(Duration::from_secs(1)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_redis_cannot_take_in_time_moves_its_stream_to_a_new_epoch() {
    let redis = TestRedis::start();
    let server = Standalone::start(redis_server(&redis, "outage")).await;
    let token = server.token("room:5");
    let mut client = Client::connect(&server.ws_url()).await;
    let epoch = client.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    server.publish("room:5", &html(1));
    assert_eq!(message(&mut client).await["seq"], 1);

    // Redis freezes (its data and connections kept) for less than the deadline: the
    // broadcast waits and goes out, in order, when Redis answers again.
    redis.pause();
    server.publish("room:5", &html(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    assert_eq!(
        message(&mut client).await,
        json!({"type": "message", "stream": "room:5", "seq": 2, "html": html(2)})
    );

    // Frozen for longer than the deadline: the broadcast is given up, and as soon as
    // Redis answers the stream moves to a new epoch. Its subscribers are closed, and
    // resuming tells them of the gap: never a silent hole.
    redis.pause();
    server.publish("room:5", &html(3));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    redis.resume();
    // (Redis may have taken it after all, once it answered: a timeout does not say.)
    let mut applied = 2;
    let closed = loop {
        match next_frame(&mut client, Duration::from_secs(15)).await {
            Received::Closed(close) => break close,
            Received::Json(frame) => {
                assert_eq!(frame["seq"], 3, "at most the broadcast itself: {frame}");
                applied = 3;
            }
        }
    };
    assert_eq!(closed.map(|(code, _)| code), Some(1013));
    let mut back = Client::connect(&server.ws_url()).await;
    let reply = back.resume(&token, &epoch, applied).await;
    assert_eq!(reply["gap"], "epoch", "{reply}");
    assert_ne!(reply["epoch"], json!(epoch));
    server.publish("room:5", &html(4));
    assert_eq!(message(&mut back).await["html"], html(4), "live again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_lost_in_a_network_cut_is_a_gap_not_a_silent_hole() {
    // Redis keeps its data; only the network between the server and it fails.
    let redis = TestRedis::start();
    let network = Proxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let url = format!("redis://127.0.0.1:{}/", network.port);
    let server = Standalone::start(
        Turbo::builder().backend(
            Redis::with_prefix(&url, "cut")
                .expect("url")
                .publish_deadline(Duration::from_secs(1)),
        ),
    )
    .await;
    let token = server.token("room:8");
    let mut client = Client::connect(&server.ws_url()).await;
    let epoch = client.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    server.publish("room:8", &html(1));
    assert_eq!(message(&mut client).await["seq"], 1);

    network.cut();
    server.publish("room:8", &html(2));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    network.restore();

    // The process is subscribed again: its clients are closed, and resume ...
    let closed = match next_frame(&mut client, Duration::from_secs(15)).await {
        Received::Closed(close) => close,
        Received::Json(frame) => panic!("the broadcast was given up: {frame}"),
    };
    assert_eq!(closed.map(|(code, _)| code), Some(1013));
    // ... into the gap signal: Redis still has the stream at seq 1, but the broadcast
    // that `send` accepted never reached it, so the stream moved to a new epoch.
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let mut back = Client::connect(&server.ws_url()).await;
        let reply = back.resume(&token, &epoch, 1).await;
        if reply.get("gap").is_some() || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply["gap"], "epoch", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_the_send_so_the_caller_knows() {
    let redis = TestRedis::start();
    let server = Standalone::start(
        Turbo::builder().backend(
            Redis::with_prefix(&redis.url(), "full")
                .expect("url")
                .queue_bytes(2000)
                .publish_deadline(Duration::from_secs(30)),
        ),
    )
    .await;
    redis.pause();
    let room = turbo_model::stream("room:6").expect("name");
    let send = |n: u64| {
        room.broadcast(turbo_model_tests::standalone::action_of(&html(n)))
            .send_with(&server.turbo)
    };
    let accepted = (1..=100).take_while(|n| send(*n).is_ok()).count();
    assert!(
        (10..30).contains(&accepted),
        "{accepted} accepted into 2000 bytes"
    );
    let refused = send(1000).expect_err("the queue is full");
    assert!(
        refused
            .to_string()
            .starts_with("backend could not publish (stream `room:6`): "),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .ends_with("(at most 2000); this one is refused"),
        "{refused}"
    );
    redis.resume();
}

/// A socket to `address` whose receive buffer is small, so that a peer that stops
/// reading fills it quickly.
async fn small_socket(address: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    socket.connect(address).await.expect("connect")
}

/// A WebSocket client that subscribes to `token` and then reads nothing.
async fn stalled_websocket(
    server: &Standalone,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let stream = small_socket(server.address).await;
    let (mut socket, _) = tokio_tungstenite::client_async(server.ws_url(), stream)
        .await
        .expect("upgrade");
    socket
        .send(Message::text(
            json!({"type": "subscribe", "stream": token}).to_string(),
        ))
        .await
        .expect("subscribe");
    socket
}

/// An SSE request for `token` whose response is never read.
async fn stalled_event_stream(server: &Standalone, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = small_socket(server.address).await;
    stream
        .write_all(
            format!(
                "GET /turbo-model/sse?stream={token} HTTP/1.1\r\nHost: {}\r\n\r\n",
                server.address
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    stream
}

fn big(n: u64) -> String {
    format!(
        "<turbo-stream action=\"append\" target=\"log\"><template><p data-n=\"{n}\">{}</p></template></turbo-stream>",
        "x".repeat(64 * 1024)
    )
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_dropped_after_the_write_timeout() {
    let server = Standalone::start(
        Turbo::builder()
            .write_timeout(Duration::from_millis(500))
            .queue(1000, 256 * 1024),
    )
    .await;
    let token = server.token("log");
    let _websocket = stalled_websocket(&server, &token).await;
    let _events = stalled_event_stream(&server, &token).await;
    wait_until("both subscribed", Duration::from_secs(5), || {
        server.turbo.metrics().subscriptions == 2
    })
    .await;
    // The queue's limit closes the WebSocket as too slow; the close frame cannot be
    // written either. The event stream is never read. Both hold a task, a socket and
    // buffers until the write timeout drops them.
    for n in 1..=64 {
        server.publish("log", &big(n));
    }
    wait_until(
        "the stalled connections dropped",
        Duration::from_secs(5),
        || server.turbo.metrics().connections == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limits_are_refused_with_503_and_retry_after() {
    let server = Standalone::start(Turbo::builder().max_connections(3, 2)).await;
    let token = server.token("log");
    let _a = Client::connect(&server.ws_url()).await;
    let _b = Client::connect(&server.ws_url()).await;
    assert_eq!(
        Client::connect_from(&server.ws_url(), &format!("http://{}", server.address))
            .await
            .err(),
        Some(503),
        "a third from 127.0.0.1"
    );
    let response = reqwest::get(server.sse_url(&token)).await.expect("GET");
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    assert_eq!(
        response.text().await.expect("body"),
        "127.0.0.1 holds 2 stream connections, the limit per address; retry later"
    );
    drop(_a);
    wait_until("a place came back", Duration::from_secs(5), || {
        server.turbo.metrics().connections == 1
    })
    .await;
    let _c = Client::connect(&server.ws_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_bound_whatever_the_clients_do() {
    // A queue long enough that nobody is closed as too slow: the clients just stall.
    let mut server = Standalone::start(
        Turbo::builder()
            .write_timeout(Duration::from_millis(500))
            .queue(1000, 64 * 1024 * 1024),
    )
    .await;
    let token = server.token("log");
    let _events = stalled_event_stream(&server, &token).await;
    let _websocket = stalled_websocket(&server, &token).await;
    wait_until("both subscribed", Duration::from_secs(5), || {
        server.turbo.metrics().subscriptions == 2
    })
    .await;
    // More than the kernel's socket buffers hold (several MB on loopback).
    for n in 1..=256 {
        server.publish("log", &big(n));
    }
    // The stalled writes fail after the write timeout (0.5 s), their connections end,
    // and the server stops within its bound: grace (2 s), write timeout and a second,
    // past which it drops whatever is left. Without the write timeout it would wait for
    // the clients for as long as they stall.
    let took = server.stop().await;
    assert!(took < Duration::from_millis(3500), "stopped in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_shutdown_event_streams_are_told_to_come_back_and_sockets_to_retry() {
    let server = Standalone::start(Turbo::builder()).await;
    let token = server.token("log");
    let shutting_down = server.turbo.clone();
    tokio::spawn(async move { shutting_down.shutdown(Duration::from_secs(5)).await });
    wait_until("shutting down", Duration::from_secs(5), || {
        server.turbo.is_shutting_down()
    })
    .await;
    let response = reqwest::get(server.sse_url(&token)).await.expect("GET");
    assert_eq!(
        response.status(),
        200,
        "EventSource gives up on anything else"
    );
    assert_eq!(response.text().await.expect("body"), "retry: 1000\n\n");
    assert_eq!(
        Client::connect_from(&server.ws_url(), &format!("http://{}", server.address))
            .await
            .err(),
        Some(503)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_authorizer_delays_only_the_subscription_it_decides() {
    let server = Standalone::start(Turbo::builder().authorize(|_, stream| async move {
        if stream.as_str() == "slow" {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Ok::<(), String>(())
    }))
    .await;
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&server.token("fast")).await;
    client
        .send_text(json!({"type": "subscribe", "stream": server.token("slow")}).to_string())
        .await;
    let asked = Instant::now();
    server.publish("fast", &html(1));
    let frame = message(&mut client).await;
    assert_eq!(
        (frame["stream"].clone(), frame["seq"].clone()),
        (json!("fast"), json!(1))
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let reply = message(&mut client).await;
    assert_eq!(
        (reply["type"].clone(), reply["stream"].clone()),
        (json!("subscribed"), json!("slow"))
    );
    assert!(asked.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthorize_ends_the_subscriptions_the_application_now_refuses() {
    let allowed = Arc::new(AtomicBool::new(true));
    let check = Arc::clone(&allowed);
    let server = Standalone::start(Turbo::builder().authorize(move |_, _| {
        let allowed = check.load(Ordering::SeqCst);
        async move {
            if allowed {
                Ok(())
            } else {
                Err("you left the room")
            }
        }
    }))
    .await;
    let token = server.token("room:1");
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&token).await;
    let mut other = Client::connect(&server.ws_url()).await;
    other.subscribe(&server.token("room:2")).await;

    allowed.store(false, Ordering::SeqCst);
    let room = turbo_model::StreamName::new("room:1").expect("name");
    assert_eq!(server.turbo.reauthorize(Subscriptions::Stream(room)), 2);
    assert_eq!(
        message(&mut client).await,
        json!({
            "type": "error",
            "code": "forbidden",
            "message": "subscription to `room:1` refused: you left the room",
            "token": token
        })
    );
    server.publish("room:1", &html(1));
    client.expect_silence(Duration::from_millis(300)).await;
    server.publish("room:2", &html(1));
    assert_eq!(
        message(&mut other).await["seq"],
        1,
        "other streams are not asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_with_a_previous_key_still_subscribe() {
    let old_key = "the key of last month, thirty-two bytes or more";
    let old = turbo_model::signing::Signer::new(old_key.as_bytes()).expect("key");
    let token = old.sign(&turbo_model::StreamName::new("log").expect("name"));
    let rotated = Standalone::start(Turbo::builder().previous_secrets([old_key])).await;
    let mut client = Client::connect(&rotated.ws_url()).await;
    assert_eq!(client.subscribe(&token).await["stream"], "log");

    let forgotten = Standalone::start(Turbo::builder()).await;
    let mut refused = Client::connect(&forgotten.ws_url()).await;
    refused
        .send_text(json!({"type": "subscribe", "stream": token}).to_string())
        .await;
    assert_eq!(refused.json().await["code"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refreshes_from_different_requests_skips_nobody() {
    let turbo = Turbo::builder()
        .secret("refresh test secret, thirty-two bytes!!")
        .refresh_debounce(Duration::from_millis(200))
        .build()
        .expect("build");
    let name = turbo_model::StreamName::new("board:1").expect("name");
    let mut page = turbo.hub().connect();
    page.subscribe(&name, None);
    let refresh = |id: &str| {
        turbo_model::stream("board:1")
            .expect("name")
            .refresh()
            .request_id(id)
            .send_with(&turbo)
            .expect("sent");
    };
    let next = async |page: &mut turbo_model::hub::Connection| {
        tokio::time::timeout(Duration::from_secs(5), page.next_frame())
            .await
            .expect("a refresh")
            .expect("a frame")
            .html()
            .to_owned()
    };

    // One request's burst: its page may skip the one refresh.
    refresh("request-a");
    refresh("request-a");
    assert_eq!(
        next(&mut page).await,
        r#"<turbo-stream action="refresh" request-id="request-a"></turbo-stream>"#
    );
    // Two users' changes in one window: whoever's came last, nobody skips it.
    refresh("request-a");
    refresh("request-b");
    assert_eq!(
        next(&mut page).await,
        r#"<turbo-stream action="refresh"></turbo-stream>"#
    );
}
