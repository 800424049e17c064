//! The delivery contract over real sockets: resume after reconnect, gap signals,
//! heartbeats, slow consumers, Origin checks, shutdown, and the same over SSE.
//! Each test runs its own `Turbo` with its own limits on an ephemeral loopback port.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use turbo_model::Turbo;
use turbo_model_tests::sse::SseClient;
use turbo_model_tests::standalone::Standalone;
use turbo_model_tests::ws::{Client, Received};

fn html(n: u64) -> String {
    format!(
        "<turbo-stream action=\"append\" target=\"log\"><template><p>{n}</p></template></turbo-stream>"
    )
}

async fn expect_message(client: &mut Client, stream: &str, seq: u64) {
    assert_eq!(
        client.json().await,
        json!({"type": "message", "stream": stream, "seq": seq, "html": html(seq)}),
    );
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_frames() {
    let server = Standalone::start(Turbo::builder()).await;
    let token = server.token("log");
    let mut client = Client::connect(&server.ws_url()).await;
    let reply = client.subscribe(&token).await;
    let epoch = reply["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(epoch.len(), 16);
    assert_eq!(reply["seq"], 0);
    for n in 1..=2 {
        server.publish("log", &html(n));
        expect_message(&mut client, "log", n).await;
    }
    drop(client);

    for n in 3..=5 {
        server.publish("log", &html(n));
    }
    let mut again = Client::connect(&server.ws_url()).await;
    let reply = again.resume(&token, &epoch, 2).await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "stream": "log", "token": token, "epoch": epoch, "seq": 5})
    );
    for n in 3..=5 {
        expect_message(&mut again, "log", n).await;
    }
    server.publish("log", &html(6));
    expect_message(&mut again, "log", 6).await;
    again.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(server.turbo.metrics().replayed, 3);
}

#[tokio::test]
async fn missed_frames_beyond_history_give_the_gap_signal() {
    let server = Standalone::start(Turbo::builder().history(3, Duration::from_secs(60))).await;
    let token = server.token("log");
    let mut client = Client::connect(&server.ws_url()).await;
    let epoch = client.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    drop(client);
    for n in 1..=5 {
        server.publish("log", &html(n));
    }
    let mut again = Client::connect(&server.ws_url()).await;
    let reply = again.resume(&token, &epoch, 1).await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "stream": "log", "token": token, "epoch": epoch, "seq": 5, "gap": "history"})
    );
    server.publish("log", &html(6));
    expect_message(&mut again, "log", 6).await;
    assert_eq!(server.turbo.metrics().gaps, 1);
}

#[tokio::test]
async fn a_restarted_server_gives_the_gap_signal_with_a_new_epoch() {
    let before = Standalone::start(Turbo::builder()).await;
    let token = before.token("log");
    let mut client = Client::connect(&before.ws_url()).await;
    let old_epoch = client.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    before.publish("log", &html(1));
    expect_message(&mut client, "log", 1).await;
    assert_eq!(before.turbo.shutdown(Duration::from_secs(5)).await, 0);
    match client.next().await {
        Received::Closed(Some((code, reason))) => {
            assert_eq!(
                (code, reason.as_str()),
                (1012, "server restarting; reconnect")
            );
        }
        other => panic!("expected close 1012, got {other:?}"),
    }
    drop(before);

    // The same secret signs the same token; only the process is new.
    let after = Standalone::start(Turbo::builder()).await;
    assert_eq!(after.token("log"), token);
    let mut client = Client::connect(&after.ws_url()).await;
    let reply = client.resume(&token, &old_epoch, 1).await;
    assert_eq!(reply["gap"], "epoch");
    assert_ne!(reply["epoch"], Value::String(old_epoch));
    assert_eq!(reply["seq"], 0);
}

#[tokio::test]
async fn shutdown_flushes_queued_frames_then_closes_and_refuses_new_connections() {
    let server = Standalone::start(Turbo::builder()).await;
    let token = server.token("log");
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&token).await;
    for n in 1..=20 {
        server.publish("log", &html(n));
    }
    let started = Instant::now();
    let still_open = server.turbo.shutdown(Duration::from_secs(5)).await;
    assert_eq!(still_open, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    for n in 1..=20 {
        expect_message(&mut client, "log", n).await;
    }
    assert!(matches!(
        client.next().await,
        Received::Closed(Some((1012, _)))
    ));
    assert_eq!(
        Client::connect_from(&server.ws_url(), &format!("http://{}", server.address))
            .await
            .err(),
        Some(503)
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_heartbeats_is_closed() {
    let server = Standalone::start(Turbo::builder().heartbeat(Duration::from_millis(100))).await;
    let mut silent = Client::connect(&server.ws_url()).await;
    let started = Instant::now();
    let mut pings = 0;
    loop {
        match silent.next().await {
            Received::Json(frame) => {
                assert_eq!(frame, json!({"type": "ping"}));
                pings += 1;
            }
            Received::Closed(close) => {
                assert_eq!(
                    close,
                    Some((4000, "no heartbeat from the client".to_owned()))
                );
                break;
            }
        }
    }
    assert!((1..=3).contains(&pings), "{pings} pings before the close");
    assert!(started.elapsed() >= Duration::from_millis(200));

    let mut answering = Client::connect(&server.ws_url()).await;
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        match answering.next().await {
            Received::Json(frame) => {
                assert_eq!(frame["type"], "ping");
                answering.send_text(r#"{"type":"pong"}"#).await;
            }
            Received::Closed(close) => panic!("an answering client was closed: {close:?}"),
        }
    }
    assert_eq!(server.turbo.metrics().connections, 1);
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_without_slowing_others_and_later_resumes() {
    const FRAMES: u64 = 400;
    let server = Standalone::start(
        Turbo::builder()
            .queue(64, 256 * 1024)
            .history(FRAMES as usize, Duration::from_secs(60)),
    )
    .await;
    let token = server.token("log");
    let mut slow = Client::connect(&server.ws_url()).await;
    let epoch = slow.subscribe(&token).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    let mut fast = Client::connect(&server.ws_url()).await;
    fast.subscribe(&token).await;

    let padding = "x".repeat(32 * 1024);
    let big = |n: u64| {
        format!(
            "<turbo-stream action=\"append\" target=\"log\"><template><p data-n=\"{n}\">{padding}</p></template></turbo-stream>"
        )
    };
    let started = Instant::now();
    for n in 1..=FRAMES {
        server.publish("log", &big(n));
        let frame = fast.json().await;
        assert_eq!(frame["seq"], n, "the reading client keeps up");
    }
    let fast_took = started.elapsed();
    assert_eq!(server.turbo.metrics().slow_consumers_kicked, 1);

    // The slow client now reads: what the network held, then the close, then it
    // resumes from the last frame it got and ends with every frame, in order.
    let mut last = 0;
    loop {
        match slow.next().await {
            Received::Json(frame) => {
                assert_eq!(frame["seq"], last + 1);
                last += 1;
            }
            Received::Closed(close) => {
                assert_eq!(
                    close,
                    Some((1013, "too slow to keep up; reconnect".to_owned()))
                );
                break;
            }
        }
    }
    assert!(last < FRAMES, "it was cut off before the end ({last})");
    let mut resumed = Client::connect(&server.ws_url()).await;
    let reply = resumed.resume(&token, &epoch, last).await;
    assert_eq!(reply.get("gap"), None);
    for n in last + 1..=FRAMES {
        let frame = resumed.json().await;
        assert_eq!(
            (frame["seq"].as_u64(), frame["html"].as_str()),
            (Some(n), Some(big(n).as_str()))
        );
    }
    #[allow(
        clippy::print_stdout,
        reason = "the figures are the point of this test"
    )]
    {
        println!(
            "slow consumer: cut off after {last} of {FRAMES} frames of 32 KiB; the reader took {fast_took:?} for all {FRAMES}"
        );
    }
}

#[tokio::test]
async fn cross_origin_upgrades_are_refused() {
    let server = Standalone::start(Turbo::builder()).await;
    assert_eq!(
        Client::connect_from(&server.ws_url(), "http://evil.example")
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Client::connect_from(
            &server.ws_url(),
            &format!("http://127.0.0.1:{}", server.address.port() + 1)
        )
        .await
        .err(),
        Some(403)
    );
    let same = Client::connect_from(&server.ws_url(), &format!("http://{}", server.address)).await;
    assert!(same.is_ok(), "the page's own origin is allowed");
    let token = server.token("log");
    assert_eq!(
        SseClient::connect(&server.sse_url(&token), None)
            .await
            .err(),
        None,
        "no Origin: not a page"
    );
    let evil_sse = reqwest::Client::new()
        .get(server.sse_url(&token))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(evil_sse.status(), 403);
}

#[tokio::test]
async fn sse_delivers_resumes_from_last_event_id_and_signals_gaps() {
    let server = Standalone::start(Turbo::builder().history(3, Duration::from_secs(60))).await;
    let token = server.token("log");
    let mut events = SseClient::connect(&server.sse_url(&token), None)
        .await
        .expect("opens");
    let opening = events.next_event().await.expect("opening event");
    assert_eq!(opening.retry, Some(1000));
    assert_eq!(opening.data, None);
    let start_id = opening.id.expect("position");
    let (epoch, seq) = start_id.split_once('.').expect("epoch.seq");
    assert_eq!((epoch.len(), seq), (16, "0"));

    server.publish("log", "<turbo-stream action=\"append\" target=\"log\"><template>\n<p>1</p>\n</template></turbo-stream>");
    let first = events.next_event().await.expect("event");
    assert_eq!(first.id.as_deref(), Some(format!("{epoch}.1").as_str()));
    assert_eq!(
        first.data.as_deref(),
        Some(
            "<turbo-stream action=\"append\" target=\"log\"><template>\n<p>1</p>\n</template></turbo-stream>"
        )
    );
    drop(events);

    server.publish("log", &html(2));
    server.publish("log", &html(3));
    let mut resumed = SseClient::connect(&server.sse_url(&token), Some(&format!("{epoch}.1")))
        .await
        .expect("reopens");
    let opening = resumed.next_event().await.expect("opening");
    assert_eq!(
        opening.id.as_deref(),
        Some(format!("{epoch}.1").as_str()),
        "the opening names the client's own position until the replay moves it on"
    );
    for n in 2..=3 {
        let event = resumed.next_event().await.expect("replayed");
        assert_eq!(event.id, Some(format!("{epoch}.{n}")));
        assert_eq!(event.data, Some(html(n)));
    }
    drop(resumed);

    for n in 4..=8 {
        server.publish("log", &html(n));
    }
    let mut gapped = SseClient::connect(&server.sse_url(&token), Some(&format!("{epoch}.3")))
        .await
        .expect("reopens");
    let refresh = gapped.next_event().await.expect("gap event");
    assert_eq!(refresh.id, Some(format!("{epoch}.8")));
    assert_eq!(
        refresh.data.as_deref(),
        Some("<turbo-stream action=\"refresh\"></turbo-stream>")
    );

    assert_eq!(
        SseClient::connect(&server.sse_url("forged.token"), None)
            .await
            .err(),
        Some(403)
    );
    let no_stream = reqwest::get(format!("http://{}/turbo-model/sse", server.address))
        .await
        .expect("request");
    assert_eq!(no_stream.status(), 400);
}

#[tokio::test]
async fn sse_connections_end_on_shutdown_after_flushing() {
    let server = Standalone::start(Turbo::builder()).await;
    let token = server.token("log");
    let mut events = SseClient::connect(&server.sse_url(&token), None)
        .await
        .expect("opens");
    events.next_event().await.expect("opening");
    for n in 1..=3 {
        server.publish("log", &html(n));
    }
    assert_eq!(server.turbo.shutdown(Duration::from_secs(5)).await, 0);
    for n in 1..=3 {
        assert_eq!(
            events.next_event().await.expect("flushed").data,
            Some(html(n))
        );
    }
    assert_eq!(events.next_event().await, None, "the stream ended");
}
