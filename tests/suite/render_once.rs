//! One broadcast renders once and serializes once, however many subscribers it has.
//! The server has a `Turbo` of its own, so no other test moves its counters.

use turbo_model_tests::server::ChatServer;
use turbo_model_tests::ws::Client;

#[tokio::test]
async fn one_render_and_one_frame_for_a_hundred_subscribers() {
    let server = ChatServer::start().await;
    let room = server.create_room("Crowded").await;
    let token = server.room_tokens(room).await.remove(0);
    let mut clients = Vec::with_capacity(100);
    for _ in 0..100 {
        let mut client = Client::connect(&server.ws_url()).await;
        client.subscribe(&token).await;
        clients.push(client);
    }
    let before = server.turbo.metrics();

    assert_eq!(server.post_message(room, "to everyone").await, 303);

    let first = clients[0].json().await;
    for client in &mut clients[1..] {
        assert_eq!(
            client.json().await,
            first,
            "every subscriber gets the same frame"
        );
    }
    // The room list's count goes out too, on the `room` stream: literal text, no render.
    server.turbo.settled().await;
    let after = server.turbo.metrics();
    assert_eq!(after.renders - before.renders, 1, "one render");
    assert_eq!(
        after.broadcasts - before.broadcasts,
        2,
        "the message, and the room list's count"
    );
    assert_eq!(after.frames - before.frames, 2, "one serialized frame each");
    assert_eq!(
        after.deliveries - before.deliveries,
        100,
        "one queue push each"
    );
    assert_eq!(after.subscriptions, 100);
}
