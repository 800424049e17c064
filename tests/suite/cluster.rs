//! The Redis backend on a Redis Cluster of the test's own (three masters): broadcasts
//! cross processes in order on sharded channels, each process receives only the streams
//! its clients watch, a client that moves resumes, and a master that stops gives the
//! streams of its slots the gap signal, never a silent hole, while the others go on.

use std::time::Duration;

use serde_json::Value;
use turbo_model::Turbo;
use turbo_model::backend::Redis;
use turbo_model_tests::redis_cluster::TestCluster;
use turbo_model_tests::standalone::Standalone;
use turbo_model_tests::ws::{Client, Received};

const PREFIX: &str = "cluster-test";

fn html(n: u64) -> String {
    format!(
        "<turbo-stream action=\"append\" target=\"log\"><template><p>{n}</p></template></turbo-stream>"
    )
}

/// A stream whose keys live on each master, in master order.
fn one_stream_per_master(cluster: &TestCluster) -> Vec<String> {
    let mut found: [Option<String>; 3] = [None, None, None];
    for n in 0.. {
        let stream = format!("room:{n}");
        let master = cluster.master_of(&format!("{PREFIX}:{{{stream}}}:meta"));
        found[master].get_or_insert(stream);
        if found.iter().all(Option::is_some) {
            break;
        }
        assert!(n < 10_000, "three masters share the slots");
    }
    found.into_iter().flatten().collect()
}

fn backend(cluster: &TestCluster) -> Redis {
    Redis::cluster_with_prefix(&cluster.urls(), PREFIX)
        .expect("node URLs")
        .publish_deadline(Duration::from_secs(2))
}

/// The next message (skipping pings), or what ended the connection.
async fn next(client: &mut Client) -> Option<Value> {
    loop {
        match client.next_within(Duration::from_secs(15)).await {
            Received::Json(frame) if frame["type"] == "ping" => {}
            Received::Json(frame) => return Some(frame),
            Received::Closed(_) => return None,
        }
    }
}

async fn message(client: &mut Client) -> Value {
    next(client)
        .await
        .expect("a frame, not a closed connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_processes_in_order_on_every_master_and_clients_resume() {
    let cluster = TestCluster::start();
    let streams = one_stream_per_master(&cluster);
    let (a_backend, b_backend) = (backend(&cluster), backend(&cluster));
    let a = Standalone::start(Turbo::builder().backend(a_backend.clone())).await;
    let b = Standalone::start(Turbo::builder().backend(b_backend.clone())).await;

    for stream in &streams {
        let mut on_a = Client::connect(&a.ws_url()).await;
        let mut on_b = Client::connect(&b.ws_url()).await;
        let sub_a = on_a.subscribe(&a.token(stream)).await;
        let sub_b = on_b.subscribe(&b.token(stream)).await;
        assert_eq!(
            sub_a["epoch"], sub_b["epoch"],
            "{stream}: one epoch, the cluster's"
        );
        for n in 1..=6 {
            let from = if n % 2 == 0 { &a } else { &b };
            from.publish(stream, &html(n));
        }
        let mut seen = Vec::new();
        for seq in 1..=6 {
            let frame = message(&mut on_a).await;
            assert_eq!(frame["seq"], seq, "{stream}");
            assert_eq!(
                message(&mut on_b).await,
                frame,
                "{stream}: the same frame on both"
            );
            seen.push(frame["html"].as_str().unwrap_or_default().to_owned());
        }
        let evens: Vec<&String> = seen
            .iter()
            .filter(|h| (2..=6).step_by(2).any(|n| **h == html(n)))
            .collect();
        assert_eq!(
            evens,
            [&html(2), &html(4), &html(6)],
            "{stream}: A's own broadcasts keep A's order"
        );

        // A client of A that saw 3 moves to B: it gets 4, 5 and 6 from the stream's log.
        let epoch = sub_a["epoch"].as_str().expect("an epoch").to_owned();
        drop(on_a);
        let mut moved = Client::connect(&b.ws_url()).await;
        moved.resume(&b.token(stream), &epoch, 3).await;
        for seq in 4..=6 {
            assert_eq!(message(&mut moved).await["seq"], seq, "{stream}: replayed");
        }
    }
    // Each process listens to the three streams it serves, and received their traffic.
    assert_eq!(a_backend.received().channels, 3);
    assert_eq!(b_backend.received().channels, 3);
    assert_eq!(a_backend.received().messages, 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_gives_its_streams_the_gap_signal_and_the_others_go_on() {
    let mut cluster = TestCluster::start();
    let streams = one_stream_per_master(&cluster);
    let (down, up) = (&streams[0], &streams[1]);
    let a = Standalone::start(Turbo::builder().backend(backend(&cluster))).await;
    let b = Standalone::start(Turbo::builder().backend(backend(&cluster))).await;

    let mut watching_down = Client::connect(&b.ws_url()).await;
    let mut watching_up = Client::connect(&b.ws_url()).await;
    let epoch = watching_down.subscribe(&b.token(down)).await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_owned();
    let up_epoch = watching_up.subscribe(&b.token(up)).await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_owned();
    a.publish(down, &html(1));
    assert_eq!(message(&mut watching_down).await["seq"], 1);

    // Master 0 stops: its stream's broadcast cannot be published; the others' can.
    cluster.stop(0);
    a.publish(down, &html(2));
    a.publish(up, &html(1));
    // B lost its connection to master 0, so its clients resume: `up` from its log.
    let mut seq_on_up = 0;
    while seq_on_up < 1 {
        match next(&mut watching_up).await {
            Some(frame) => seq_on_up = frame["seq"].as_u64().unwrap_or_default(),
            None => {
                watching_up = Client::connect(&b.ws_url()).await;
                let reply = watching_up.resume(&b.token(up), &up_epoch, 0).await;
                assert!(reply["gap"].is_null(), "{up} kept its log: {reply}");
            }
        }
    }

    // Master 0 comes back empty; the lost broadcast moves `down` to a new epoch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(0);
    // The page that saw 1 comes back (its socket was closed meanwhile, or it is now):
    // it is told of the gap, so it refreshes; it never silently misses 2.
    drop(watching_down);
    let mut returning = Client::connect(&b.ws_url()).await;
    let token = b.token(down);
    // As the client element does: on a refusal or a closed socket, try again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let reply = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{down} serves again within 30 s"
        );
        returning
            .send_text(
                serde_json::json!({
                    "type": "subscribe",
                    "stream": token,
                    "since": {"epoch": epoch, "seq": 1}
                })
                .to_string(),
            )
            .await;
        match next(&mut returning).await {
            Some(reply) if reply["type"] == "subscribed" && reply["epoch"] != epoch => {
                break reply;
            }
            Some(reply) if reply["type"] == "subscribed" => {
                panic!("{down} resumed on its old epoch, silently missing 2: {reply}")
            }
            Some(_refused) => {}
            None => returning = Client::connect(&b.ws_url()).await,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply["gap"], "epoch", "the page is told: {reply}");
    // And the stream works again. The publisher may move it to one more epoch as it
    // settles the lost broadcast: a page then refreshes once more (what it renders holds
    // everything up to then); what follows arrives live.
    let (mut epoch, mut seq) = (
        reply["epoch"].as_str().expect("an epoch").to_owned(),
        reply["seq"].as_u64().expect("a seq"),
    );
    a.publish(down, &html(3));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "3 arrives within 30 s"
        );
        match next(&mut returning).await {
            Some(frame) if frame["type"] == "message" => {
                assert_eq!(frame["html"], html(3), "{frame}");
                break;
            }
            Some(frame) => panic!("unexpected {frame}"),
            None => {
                returning = Client::connect(&b.ws_url()).await;
                let again = returning.resume(&token, &epoch, seq).await;
                if again["gap"].is_string() {
                    // Refreshed: the page shows what the stream has now.
                    epoch = again["epoch"].as_str().expect("an epoch").to_owned();
                    seq = again["seq"].as_u64().expect("a seq");
                    if seq >= 1 {
                        break;
                    }
                }
            }
        }
    }
}
