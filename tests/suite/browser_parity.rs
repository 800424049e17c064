//! The chat in real browsers, with JavaScript on and off, signed in and not: forms that
//! work without scripts, the room list refreshing itself, private rooms.

use serde_json::json;
use turbo_model_tests::browser::{Browser, BrowserError};
use turbo_model_tests::chat_page::{
    MESSAGE_INPUT, MESSAGE_TEXTS, STEP, SUBSCRIBED, WHOLE_TEST, create_room_with_form,
    item_with_text, marker, screenshot_path, send,
};
use turbo_model_tests::server::ChatServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_javascript_posts_and_deletes_and_a_live_page_follows()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, without_javascript())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn without_javascript() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let room = chat.create_room("Plain").await;
    let room_url = format!("{}/rooms/{room}/", chat.base_url);
    let browser = Browser::start().await?;
    let plain = browser.open_page_without_javascript().await?;
    let live = browser.open_page().await?;
    live.show_on_failure("#messages");
    live.goto(&room_url).await?;
    live.wait_for(SUBSCRIBED, STEP).await?;
    live.execute("window.__marker = 1", vec![]).await?;

    plain.goto(&room_url).await?;
    assert_eq!(
        plain.count(SUBSCRIBED).await?,
        0,
        "no script, no connection"
    );
    let status_shown = "const source = document.querySelector('turbo-model-stream-source');
                        return getComputedStyle(source).display !== 'none'";
    assert_eq!(
        plain.execute(status_shown, vec![]).await?,
        json!(false),
        "no \"connecting…\" that never connects"
    );
    assert_eq!(live.execute(status_shown, vec![]).await?, json!(true));
    plain.fill(MESSAGE_INPUT, "typed without scripts").await?;
    plain.click("#message-form button[type=submit]").await?;
    plain
        .wait_for_text(MESSAGE_TEXTS, "typed without scripts", STEP)
        .await?;
    assert_eq!(plain.url().await?, room_url, "the form redirected back");
    assert_eq!(plain.value_of(MESSAGE_INPUT).await?, "");

    live.wait_for_text(MESSAGE_TEXTS, "typed without scripts", STEP)
        .await?;
    let item = item_with_text(&live, "typed without scripts").await?;
    plain
        .click(&format!("#{item} form.delete button[type=submit]"))
        .await?;
    live.wait_for_gone(&format!("#{item}"), STEP).await?;
    assert_eq!(plain.count(&format!("#{item}")).await?, 0);
    assert_eq!(
        marker(&live).await?,
        json!(1),
        "the live page never reloaded"
    );
    plain.close().await?;
    live.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_private_room_appears_in_the_list_and_admits_only_its_user()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, private_room())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn private_room() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let browser = Browser::start().await?;
    let alice = browser.open_page().await?;
    let bob = browser.open_page().await?;
    let index = format!("{}/", chat.base_url);

    // Bob watches the room list.
    bob.goto(&index).await?;
    bob.show_on_failure("#rooms");
    bob.wait_for(SUBSCRIBED, STEP).await?;
    bob.execute("window.__marker = 1", vec![]).await?;

    // Alice signs in and creates a room only she may join.
    alice.goto(&index).await?;
    alice
        .fill("#session-form input[name=name]", "alice")
        .await?;
    alice.click("#session-form button[type=submit]").await?;
    alice.wait_for_text("#user", "alice", STEP).await?;
    alice
        .fill("#room-form input[name=name]", "Secret plans")
        .await?;
    alice
        .fill("#room-form input[name=private_to]", "alice")
        .await?;
    create_room_with_form(&alice).await?;
    alice.wait_for(SUBSCRIBED, STEP).await?;
    let room_url = alice.url().await?;
    send(&alice, "for my eyes only").await?;
    alice
        .wait_for_text(MESSAGE_TEXTS, "for my eyes only", STEP)
        .await?;

    // Bob's list refreshed itself (morphing, no reload) and shows the room as private.
    bob.wait_for_text("#rooms a", "Secret plans", STEP).await?;
    assert_eq!(bob.text_of("#rooms .private").await?, "private to alice");
    assert_eq!(marker(&bob).await?, json!(1), "morphed, not reloaded");

    // Bob cannot open it.
    bob.goto(&room_url).await?;
    let room = room_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    bob.wait_for_text("body", &format!("room {room} is private"), STEP)
        .await?;
    assert_eq!(bob.count("#messages").await?, 0);
    alice
        .screenshot(screenshot_path("private-room-alice.png"))
        .await?;
    alice.close().await?;
    bob.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_keeps_what_the_user_is_typing() -> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, refresh_while_typing())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

/// Somebody else's new room refreshes the list while the user types the name of theirs:
/// the list morphs, the half-typed name stays, and the form still works.
async fn refresh_while_typing() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let browser = Browser::start().await?;
    let page = browser.open_page().await?;
    page.show_on_failure("body");
    page.goto(&format!("{}/", chat.base_url)).await?;
    page.wait_for(SUBSCRIBED, STEP).await?;
    page.execute("window.__marker = 1", vec![]).await?;
    let name = "#room-form input[name=name]";
    page.fill(name, "Half typ").await?;
    // The user looks away: the field is edited but no longer focused.
    page.execute("document.activeElement.blur()", vec![])
        .await?;

    chat.create_room("Elsewhere").await;
    page.wait_for_text("#rooms a", "Elsewhere", STEP).await?;
    assert_eq!(marker(&page).await?, json!(1), "morphed, not reloaded");
    assert_eq!(
        page.value_of(name).await?,
        "Half typ",
        "the typed text stays"
    );

    page.fill(name, "Half typed, then sent").await?;
    create_room_with_form(&page).await?;
    assert_eq!(page.text_of("h1").await?, "Half typed, then sent");
    page.close().await?;
    Ok(())
}
