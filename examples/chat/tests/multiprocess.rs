//! Two chat processes behind one Redis, as behind a load balancer: a message saved
//! through either reaches the pages of both, in order, and a page whose connection moves
//! to the other process resumes where it was. The processes are the real `chat` binary;
//! the same runs on a Redis Cluster of three masters.

mod support;

use serde_json::{Value, json};
use support::{Chat, Database};
use turbo_model_tests::browser::{Browser, BrowserError};
use turbo_model_tests::chat_page::{MESSAGE_TEXTS, STEP, SUBSCRIBED, WHOLE_TEST, send};
use turbo_model_tests::redis_cluster::TestCluster;
use turbo_model_tests::redis_server::TestRedis;
use turbo_model_tests::ws::Client;

async fn two_chats(tag: &str) -> (TestRedis, Database, Chat, Chat) {
    let redis = TestRedis::start();
    let database = Database::new(tag);
    // One at a time: the first creates and migrates the database.
    let a = Chat::start(&database.url(), &redis);
    let b = Chat::start(&database.url(), &redis);
    (redis, database, a, b)
}

async fn next_message(client: &mut Client) -> Value {
    loop {
        let frame = client.json().await;
        if frame["type"] == "message" {
            return frame;
        }
        if frame["type"] == "ping" {
            client.send_text(r#"{"type":"pong"}"#).await;
        }
    }
}

fn text_of(frame: &Value) -> String {
    let html = frame["html"].as_str().unwrap_or_default();
    html.split("<span class=\"text\">")
        .nth(1)
        .and_then(|rest| rest.split("</span>").next())
        .unwrap_or_default()
        .to_owned()
}

/// Starts `n` chats at once on `database` (new): each must come up and serve its index.
async fn start_together(database: &str, n: usize) {
    let redis = TestRedis::start();
    let mut chats: Vec<Chat> = (0..n).map(|_| Chat::spawn(database, &redis)).collect();
    for chat in &mut chats {
        chat.wait_until_listening();
        let status = Chat::http()
            .get(format!("{}/", chat.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /: {e}"))
            .status();
        assert_eq!(status, 200, "{}", chat.base_url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_starting_together_on_a_new_sqlite_database_all_serve() {
    let database = Database::new("together");
    start_together(&database.url(), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_starting_together_on_a_new_postgres_database_all_serve() {
    let pg = turbo_model_tests::db::PgDatabase::create("together")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    start_together(&pg.url(), 4).await;
    pg.drop_now().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_saved_through_one_process_reaches_pages_of_the_other_in_order() {
    let (_redis, _database, a, b) = two_chats("order").await;
    let room = a.create_room("Across").await;
    let page = b.subscription(room).await;
    let mut on_b = Client::connect(&b.ws_url()).await;
    assert_eq!(
        on_b.subscribe(&page.token).await["stream"],
        format!("room:{room}")
    );

    for n in 1..=5 {
        a.post(room, &format!("message {n}")).await;
    }
    for n in 1..=5 {
        let frame = next_message(&mut on_b).await;
        assert_eq!(frame["stream"], format!("room:{room}"));
        assert_eq!(frame["seq"], n);
        assert_eq!(text_of(&frame), format!("message {n}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_connection_moves_to_the_other_process_resumes() {
    let (_redis, _database, a, b) = two_chats("move").await;
    moves_and_resumes(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_messages_cross_processes_in_order_and_pages_resume() {
    let cluster = TestCluster::start();
    let nodes = cluster.urls().join(",");
    let database = Database::new("cluster");
    let chat = || {
        let mut chat = Chat::spawn_with(
            &database.url(),
            "redis://127.0.0.1:1/",
            &[("TURBO_MODEL_REDIS_CLUSTER", nodes.as_str())],
            None,
        );
        chat.wait_until_listening();
        chat
    };
    let (a, b) = (chat(), chat());
    let room = a.create_room("Clustered").await;
    let page = b.subscription(room).await;
    let mut on_b = Client::connect(&b.ws_url()).await;
    on_b.subscribe(&page.token).await;
    for n in 1..=5 {
        a.post(room, &format!("message {n}")).await;
    }
    for n in 1..=5 {
        let frame = next_message(&mut on_b).await;
        assert_eq!(frame["seq"], n);
        assert_eq!(text_of(&frame), format!("message {n}"));
    }
    moves_and_resumes(&a, &b).await;
}

/// A page of `a` that saw one message moves to `b` and gets what it missed, then more.
async fn moves_and_resumes(a: &Chat, b: &Chat) {
    let room = a.create_room("Moving").await;
    let page = a.subscription(room).await;
    let mut client = Client::connect(&a.ws_url()).await;
    let reply = client.subscribe(&page.token).await;
    let epoch = reply["epoch"].as_str().expect("epoch").to_owned();
    a.post(room, "before the move").await;
    let first = next_message(&mut client).await;
    let seen = first["seq"].as_u64().expect("seq");
    drop(client);

    for n in 1..=3 {
        a.post(room, &format!("while moving {n}")).await;
    }
    let mut moved = Client::connect(&b.ws_url()).await;
    let reply = moved.resume(&page.token, &epoch, seen).await;
    assert_eq!(reply.get("gap"), None, "{reply}");
    for n in 1..=3 {
        let frame = next_message(&mut moved).await;
        assert_eq!(frame["seq"], json!(seen + n));
        assert_eq!(text_of(&frame), format!("while moving {n}"));
    }
    b.post(room, "after the move").await;
    assert_eq!(text_of(&next_message(&mut moved).await), "after the move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_on_two_processes_chat_live() -> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, async {
        let (_redis, _database, a, b) = two_chats("browser").await;
        let room = a.create_room("Two servers").await;
        let browser = Browser::start().await?;
        let page_a = browser.open_page().await?;
        let page_b = browser.open_page().await?;
        page_a
            .goto(&format!("{}/rooms/{room}/", a.base_url))
            .await?;
        page_b
            .goto(&format!("{}/rooms/{room}/", b.base_url))
            .await?;
        for page in [&page_a, &page_b] {
            page.show_on_failure("#messages");
            page.wait_for(SUBSCRIBED, STEP).await?;
        }
        page_b.execute("window.__marker = 1", vec![]).await?;
        send(&page_a, "from the first server").await?;
        page_b
            .wait_for_text(MESSAGE_TEXTS, "from the first server", STEP)
            .await?;
        send(&page_b, "from the second server").await?;
        page_a
            .wait_for_text(MESSAGE_TEXTS, "from the second server", STEP)
            .await?;
        assert_eq!(
            page_b.texts_of(MESSAGE_TEXTS).await?,
            ["from the first server", "from the second server"]
        );
        assert_eq!(
            page_a.texts_of(MESSAGE_TEXTS).await?,
            ["from the first server", "from the second server"]
        );
        assert_eq!(
            page_b.execute("return window.__marker", vec![]).await?,
            json!(1)
        );
        page_a.close().await?;
        page_b.close().await?;
        Ok(())
    })
    .await
    .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}
