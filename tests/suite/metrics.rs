//! The Prometheus route: scraped over HTTP after real traffic, on one process and on
//! Redis, with exact values.

use std::time::Duration;

use turbo_model::Turbo;
use turbo_model::backend::Redis;
use turbo_model_tests::redis_server::TestRedis;
use turbo_model_tests::standalone::Standalone;
use turbo_model_tests::ws::Client;

/// The scrape: its content type and its lines.
async fn scrape(server: &Standalone) -> (String, Vec<String>) {
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", server.base_url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body = response.text().await.expect("body");
    (content_type, body.lines().map(str::to_owned).collect())
}

fn has(lines: &[String], line: &str) {
    assert!(
        lines.iter().any(|l| l == line),
        "no line {line:?} in the scrape:\n{}",
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_connections_refusals_and_broadcasts() {
    let server =
        Standalone::start_with(Turbo::builder(), |turbo| turbo.metrics_router("/metrics")).await;
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&server.token("board:1")).await;
    for bad in [
        "not json",
        r#"{"type":"subscribe","stream":"forged.token"}"#,
    ] {
        client.send_text(bad).await;
        assert_eq!(client.json().await["type"], "error");
    }
    server.publish(
        "board:1",
        "<turbo-stream action=\"remove\" target=\"x\"></turbo-stream>",
    );
    assert_eq!(client.json().await["seq"], 1);

    let (content_type, lines) = scrape(&server).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    for line in [
        "# TYPE turbo_model_connections gauge",
        "turbo_model_connections 1",
        "turbo_model_subscriptions 1",
        "turbo_model_broadcasts_total 1",
        "turbo_model_deliveries_total 1",
        "turbo_model_refusals_total{reason=\"bad_request\"} 1",
        "turbo_model_refusals_total{reason=\"invalid_token\"} 1",
        "turbo_model_refusals_total{reason=\"forbidden\"} 0",
        "turbo_model_kicks_total{reason=\"slow_consumer\"} 0",
        "turbo_model_async_hooks_waiting 0",
        "# EOF",
    ] {
        has(&lines, line);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("turbo_model_history_bytes ")
                && l != "turbo_model_history_bytes 0"),
        "the broadcast is kept for resuming clients"
    );
    assert!(
        !lines.iter().any(|l| l.contains("broker")),
        "no broker, no broker metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_scrape_shows_the_broker_queue_latency_and_traffic() {
    let redis = TestRedis::start();
    let server = Standalone::start_with(
        Turbo::builder().backend(Redis::with_prefix(&redis.url(), "metrics").expect("url")),
        |turbo| turbo.metrics_router("/metrics"),
    )
    .await;
    let mut client = Client::connect(&server.ws_url()).await;
    client.subscribe(&server.token("board:1")).await;
    for _ in 0..3 {
        server.publish(
            "board:1",
            "<turbo-stream action=\"remove\" target=\"x\"></turbo-stream>",
        );
    }
    for seq in 1..=3 {
        assert_eq!(client.json().await["seq"], seq);
    }
    let (_, lines) = scrape(&server).await;
    for line in [
        "turbo_model_broker_published_total 3",
        "turbo_model_broker_received_total 3",
        "turbo_model_broker_channels 1",
        "turbo_model_broker_queue 0",
        "turbo_model_broker_lost_total 0",
        "# TYPE turbo_model_broker_publish_seconds histogram",
        "turbo_model_broker_publish_seconds_count 3",
        "turbo_model_broker_publish_seconds_bucket{le=\"+Inf\"} 3",
    ] {
        has(&lines, line);
    }
}
