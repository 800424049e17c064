//! The Redis backend: two `Turbo`s (two server processes, as far as Redis can tell) on
//! one Redis of the test's own. A broadcast from either reaches the subscribers of both,
//! in order; a client that moves from one to the other resumes; and when Redis goes away
//! and comes back empty, clients get the gap signal, never a silent hole.

use std::time::Duration;

use serde_json::{Value, json};
use turbo_model::Turbo;
use turbo_model::backend::Redis;
use turbo_model_tests::redis_server::TestRedis;
use turbo_model_tests::standalone::Standalone;
use turbo_model_tests::ws::{Client, Received};

fn html(n: u64) -> String {
    format!(
        "<turbo-stream action=\"append\" target=\"log\"><template><p>{n}</p></template></turbo-stream>"
    )
}

async fn server(redis: &TestRedis) -> Standalone {
    Standalone::start(
        Turbo::builder().backend(Redis::with_prefix(&redis.url(), "broker-test").expect("url")),
    )
    .await
}

/// Waits until `client` gets the message with this seq, skipping pings.
async fn message(client: &mut Client) -> Value {
    loop {
        let frame = client.json().await;
        if frame["type"] != "ping" {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_from_either_process_reaches_both_in_order() {
    let redis = TestRedis::start();
    let a = server(&redis).await;
    let b = server(&redis).await;
    let token = a.token("room:1");
    assert_eq!(b.token("room:1"), token, "one secret, one token");

    let mut on_a = Client::connect(&a.ws_url()).await;
    let mut on_b = Client::connect(&b.ws_url()).await;
    let sub_a = on_a.subscribe(&token).await;
    let sub_b = on_b.subscribe(&token).await;
    assert_eq!(
        sub_a["epoch"], sub_b["epoch"],
        "the epoch is Redis's, the same for both"
    );
    assert_eq!(
        (sub_a["seq"].clone(), sub_b["seq"].clone()),
        (json!(0), json!(0))
    );

    for n in 1..=10 {
        let from = if n % 2 == 0 { &a } else { &b };
        from.publish("room:1", &html(n));
    }
    // Redis numbers them as they arrive; both processes deliver that one order, and
    // each process's own broadcasts keep the order it sent them in.
    let mut order = Vec::new();
    for seq in 1..=10 {
        let on_a_frame = message(&mut on_a).await;
        assert_eq!(on_a_frame["seq"], seq);
        assert_eq!(
            message(&mut on_b).await,
            on_a_frame,
            "the same frame on both"
        );
        let got = on_a_frame["html"].as_str().unwrap_or_default().to_owned();
        order.push((1..=10).find(|n| got == html(*n)).expect("a known frame"));
    }
    let from_a: Vec<u64> = order.iter().copied().filter(|n| n % 2 == 0).collect();
    let from_b: Vec<u64> = order.iter().copied().filter(|n| n % 2 == 1).collect();
    assert_eq!(from_a, [2, 4, 6, 8, 10]);
    assert_eq!(from_b, [1, 3, 5, 7, 9]);
    // Rendered once, in the process that published: each process built each frame once.
    assert_eq!(a.turbo.metrics().frames, 10);
    assert_eq!(b.turbo.metrics().frames, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_the_other_process_resumes() {
    let redis = TestRedis::start();
    let a = server(&redis).await;
    let b = server(&redis).await;
    let token = a.token("room:2");
    let mut client = Client::connect(&a.ws_url()).await;
    let epoch = client.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    a.publish("room:2", &html(1));
    assert_eq!(message(&mut client).await["seq"], 1);
    drop(client);

    for n in 2..=4 {
        a.publish("room:2", &html(n));
    }
    // B has never seen room:2 and has no subscribers for it: the log answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut moved = Client::connect(&b.ws_url()).await;
    let reply = moved.resume(&token, &epoch, 1).await;
    assert_eq!(reply["seq"], 4);
    assert_eq!(reply.get("gap"), None);
    for n in 2..=4 {
        assert_eq!(
            message(&mut moved).await,
            json!({"type": "message", "stream": "room:2", "seq": n, "html": html(n)})
        );
    }
    b.publish("room:2", &html(5));
    assert_eq!(
        message(&mut moved).await["seq"],
        5,
        "live after the replay, no duplicate"
    );
    moved.expect_silence(Duration::from_millis(300)).await;

    // A position older than the log keeps is a gap, from either process.
    let mut late = Client::connect(&b.ws_url()).await;
    let reply = late.resume(&token, "0000000000000001", 0).await;
    assert_eq!(reply["gap"], "epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_goes_away_broadcasts_fail_loudly_and_clients_get_the_gap_signal() {
    let mut redis = TestRedis::start();
    let a = server(&redis).await;
    let token = a.token("room:3");
    let mut client = Client::connect(&a.ws_url()).await;
    let epoch = client.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    a.publish("room:3", &html(1));
    assert_eq!(message(&mut client).await["seq"], 1);

    redis.stop();
    // The publish itself is accepted (the write that caused it must not fail); Redis
    // refuses it and the loss is logged.
    a.publish("room:3", &html(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();

    // Once the process is subscribed again, every client is told to reconnect ...
    let closed = loop {
        match client.next_within(Duration::from_secs(15)).await {
            Received::Closed(close) => break close,
            Received::Json(frame) => assert_eq!(frame["type"], "ping", "{frame}"),
        }
    };
    assert_eq!(closed.map(|(code, _)| code), Some(1013));
    // ... and learns, when it resumes, that Redis lost the stream: a new epoch.
    let mut back = Client::connect(&a.ws_url()).await;
    let reply = back.resume(&token, &epoch, 1).await;
    assert_eq!(reply["gap"], "epoch");
    assert_ne!(reply["epoch"], json!(epoch));
    a.publish("room:3", &html(3));
    assert_eq!(message(&mut back).await["html"], html(3), "live again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_backend_serves_one_turbo_and_stops_with_it() {
    let redis = TestRedis::start();
    let backend = Redis::with_prefix(&redis.url(), "lifecycle-test").expect("url");
    let turbo = Turbo::builder()
        .secret("lifecycle test secret, at least 32 bytes")
        .backend(backend.clone())
        .build()
        .expect("the first Turbo starts the backend");
    let again = Turbo::builder()
        .secret("lifecycle test secret, at least 32 bytes")
        .backend(backend)
        .build()
        .expect_err("a backend that is running cannot start again");
    assert_eq!(
        again.to_string(),
        "backend could not start (stream `-`): this Redis backend is already started: give each Turbo its own"
    );

    let room = turbo_model::stream("room:9").expect("name");
    room.refresh()
        .debounce(Duration::ZERO)
        .send_with(&turbo)
        .expect("accepted while running");
    assert_eq!(turbo.shutdown(Duration::from_secs(1)).await, 0);
    let after = room
        .refresh()
        .debounce(Duration::ZERO)
        .send_with(&turbo)
        .expect_err("nothing publishes after shutdown");
    assert_eq!(
        after.to_string(),
        "backend could not publish (stream `room:9`): the Redis backend has stopped"
    );
}

/// A server whose `POST /say/{n}` appends `<p>n</p>` to `room:7` for everyone but the
/// page that made the request (`to_others`), as a form handler does.
async fn server_with_a_form(redis: &TestRedis) -> Standalone {
    Standalone::start_with(
        Turbo::builder().backend(Redis::with_prefix(&redis.url(), "to-others").expect("url")),
        |_| {
            axum::Router::new().route(
                "/say/{n}",
                axum::routing::post(
                    |axum::extract::Path(n): axum::extract::Path<u64>| async move {
                        turbo_model::stream("room:7")
                            .and_then(|room| {
                                room.broadcast(turbo_model_tests::standalone::action_of(&html(n)))
                                    .to_others()
                                    .send()
                            })
                            .map_err(|e| e.to_string())
                    },
                ),
            )
        },
    )
    .await
}

async fn say(server: &Standalone, n: u64, connection: &str) {
    let status = reqwest::Client::new()
        .post(format!("{}/say/{n}", server.base_url()))
        .header("x-turbo-model-connection", connection)
        .send()
        .await
        .expect("POST /say")
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_others_skips_only_the_sender_whichever_process_serves_its_request() {
    let redis = TestRedis::start();
    let a = server_with_a_form(&redis).await;
    let b = server_with_a_form(&redis).await;
    let token = a.token("room:7");
    // The first connection of each process: the same number in both.
    let (mut on_a, hello_a) = Client::connect_with_hello(&a.ws_url()).await;
    let (mut on_b, hello_b) = Client::connect_with_hello(&b.ws_url()).await;
    on_a.subscribe(&token).await;
    on_b.subscribe(&token).await;
    let page_a = hello_a["connection"].as_str().expect("a token").to_owned();
    let page_b = hello_b["connection"].as_str().expect("a token").to_owned();

    // B's page posts through the load balancer to A: only B's page is skipped.
    say(&a, 1, &page_b).await;
    assert_eq!(
        message(&mut on_b).await,
        json!({"type": "skip", "stream": "room:7", "seq": 1, "html": ""})
    );
    assert_eq!(
        message(&mut on_a).await["html"],
        html(1),
        "an unrelated page sees it"
    );

    // And A's page posting to B.
    say(&b, 2, &page_a).await;
    assert_eq!(message(&mut on_a).await["type"], "skip");
    assert_eq!(message(&mut on_b).await["html"], html(2));
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_receives_only_the_streams_its_clients_watch() {
    let redis = TestRedis::start();
    let backend = |prefix: &str| {
        Redis::with_prefix(&redis.url(), prefix)
            .expect("url")
            .linger(Duration::from_millis(200))
    };
    let a_backend = backend("interest");
    let b_backend = backend("interest");
    let a = Standalone::start(Turbo::builder().backend(a_backend.clone())).await;
    let b = Standalone::start(Turbo::builder().backend(b_backend.clone())).await;

    let mut on_a = Client::connect(&a.ws_url()).await;
    let mut on_b = Client::connect(&b.ws_url()).await;
    on_a.subscribe(&a.token("room:1")).await;
    let epoch = on_b.subscribe(&b.token("room:2")).await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_owned();
    assert_eq!(a_backend.received().channels, 1);
    assert_eq!(b_backend.received().channels, 1);

    // Ten broadcasts on each room, all sent by A.
    for n in 1..=10 {
        a.publish("room:1", &html(n));
        a.publish("room:2", &html(n));
    }
    for seq in 1..=10 {
        assert_eq!(message(&mut on_a).await["seq"], seq);
        assert_eq!(message(&mut on_b).await["seq"], seq);
    }
    let frame_bytes = |n: u64| html(n).len() as u64;
    let (a_got, b_got) = (a_backend.received(), b_backend.received());
    assert_eq!(
        (a_got.messages, b_got.messages),
        (10, 10),
        "each process got its own room's ten, not all twenty"
    );
    let html_bytes: u64 = (1..=10).map(frame_bytes).sum();
    assert!(
        b_got.bytes >= html_bytes && b_got.bytes < html_bytes + 10 * 200,
        "B received its room's bytes only: {} for {html_bytes} of markup",
        b_got.bytes
    );

    // B's client leaves: after the linger, B stops listening to room:2 ...
    drop(on_b);
    eventually("B lets room:2 go", || b_backend.received().channels == 0).await;
    a.publish("room:2", &html(11));
    a.publish("room:1", &html(11));
    assert_eq!(message(&mut on_a).await["seq"], 11);
    assert_eq!(b_backend.received().messages, 10, "nothing more for B");

    // ... and a client that comes back to B resumes from Redis's log, then follows live.
    let mut back = Client::connect(&b.ws_url()).await;
    let resumed = back.resume(&b.token("room:2"), &epoch, 10).await;
    assert_eq!(resumed["type"], "subscribed", "{resumed}");
    assert_eq!(message(&mut back).await["seq"], 11, "replayed from the log");
    a.publish("room:2", &html(12));
    assert_eq!(message(&mut back).await["seq"], 12, "live again");
    assert_eq!(b_backend.received().channels, 1);
}
