//! The chat in a real browser: two headless Chromium windows on one room, as two users.
//!
//! Needs Chromium and chromedriver (`scripts/install-browser`); without them the test
//! fails, it never skips.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::json;
use turbo_model_tests::browser::{Browser, BrowserError, Page};
use turbo_model_tests::chat_page::{
    MESSAGE_TEXTS, STEP, SUBSCRIBED, WHOLE_TEST, back_online, create_room_with_form, go_offline,
    item_with_text, marker, screenshot_path, send,
};
use turbo_model_tests::server::ChatServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sent_in_one_window_appears_in_the_other_and_delete_removes_it()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, two_users_chat())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn two_users_chat() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let browser = Browser::start().await?;
    let a = browser.open_page().await?;
    let b = browser.open_page().await?;
    a.show_on_failure("body");
    b.show_on_failure("body");

    // A creates the room through the form and lands in it.
    a.goto(&format!("{}/", chat.base_url)).await?;
    a.fill("#room-form input[name=name]", "Browsers").await?;
    create_room_with_form(&a).await?;
    let room_url = a.url().await?;

    b.goto(&room_url).await?;
    for page in [&a, &b] {
        page.show_on_failure("#messages");
        page.wait_for(SUBSCRIBED, STEP).await?;
    }
    // A full page load would lose this; Turbo Stream actions keep it.
    b.execute("window.__marker = 1", vec![]).await?;

    let hello = "Hello from A";
    send(&a, hello).await?;
    b.wait_for_text(MESSAGE_TEXTS, hello, STEP).await?;
    assert_eq!(
        b.texts_of(MESSAGE_TEXTS).await?,
        [hello],
        "B shows the message"
    );
    assert_eq!(marker(&b).await?, json!(1), "B was not reloaded");
    a.wait_for_text(MESSAGE_TEXTS, hello, STEP).await?;

    // Markup typed by a user is text, not HTML.
    let markup = r#"<b>&"x"</b>"#;
    a.wait_for(SUBSCRIBED, STEP).await?;
    send(&a, markup).await?;
    b.wait_for_text(MESSAGE_TEXTS, markup, STEP).await?;
    assert_eq!(
        b.count("#messages .text b").await?,
        0,
        "the text was not parsed as HTML"
    );
    assert!(
        b.html_of("#messages")
            .await?
            .contains("&lt;b&gt;&amp;\"x\"&lt;/b&gt;"),
        "B's list holds the escaped text: {}",
        b.html_of("#messages").await?
    );
    a.wait_for_text(MESSAGE_TEXTS, markup, STEP).await?;
    // The streams are ordered: with the second message in, a duplicate of the first
    // would be in too.
    assert_eq!(
        a.texts_of(MESSAGE_TEXTS).await?,
        [hello, markup],
        "A shows each message once"
    );
    assert_eq!(b.texts_of(MESSAGE_TEXTS).await?, [hello, markup]);

    // A deletes the first message; it disappears from both windows.
    let hello_item = item_with_text(&a, hello).await?;
    a.wait_for(SUBSCRIBED, STEP).await?;
    a.click(&format!("#{hello_item} form.delete button[type=submit]"))
        .await?;
    b.wait_for_gone(&format!("#{hello_item}"), STEP).await?;
    a.wait_for_gone(&format!("#{hello_item}"), STEP).await?;
    assert_eq!(b.texts_of(MESSAGE_TEXTS).await?, [markup]);
    assert_eq!(a.texts_of(MESSAGE_TEXTS).await?, [markup]);
    assert_eq!(marker(&b).await?, json!(1), "B was not reloaded");
    // The pages keep to the chat's Content-Security-Policy: nothing was blocked.
    for page in [&a, &b] {
        let console = page.console().await;
        assert!(
            !console.contains("Content Security Policy"),
            "a CSP violation:\n{console}"
        );
    }

    b.screenshot(screenshot_path("chat-b.png")).await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_reconnects_by_itself_whatever_the_close_code() -> Result<(), BrowserError>
{
    tokio::time::timeout(WHOLE_TEST, reconnects())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn reconnects() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let room = chat.create_room("Reconnect").await;
    let browser = Browser::start().await?;
    let page = browser.open_page().await?;
    page.show_on_failure("#messages");
    page.goto(&format!("{}/rooms/{room}/", chat.base_url))
        .await?;
    page.wait_for(SUBSCRIBED, STEP).await?;
    page.execute("window.__marker = 1", vec![]).await?;

    for (round, code) in [1000, 4000, 3001].into_iter().enumerate() {
        // Close the page's one socket from the page side, with this code.
        page.execute(
            "const connection = document.querySelector('turbo-model-stream-source').connection;
             window.__closed = connection.socket;
             connection.socket.close(arguments[0], 'test');",
            vec![json!(code)],
        )
        .await?;
        page.wait_until(
            "a new socket, subscribed again, after the close",
            "const source = document.querySelector('turbo-model-stream-source');
             const socket = source.connection.socket;
             return socket !== null && socket !== window.__closed
                 && socket.readyState === WebSocket.OPEN && source.hasAttribute('connected')",
            vec![],
            STEP,
        )
        .await?;
        let text = format!("after close {code}");
        assert_eq!(chat.post_message(room, &text).await, 303);
        page.wait_for_text(MESSAGE_TEXTS, &text, STEP).await?;
        assert_eq!(page.texts_of(MESSAGE_TEXTS).await?.len(), round + 1);
    }
    assert_eq!(
        marker(&page).await?,
        json!(1),
        "the page was never reloaded"
    );
    page.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_a_page_is_offline_arrive_in_order_when_it_reconnects()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, offline_then_back())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn offline_then_back() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let room = chat.create_room("Offline").await;
    let browser = Browser::start().await?;
    let a = browser.open_page().await?;
    let b = browser.open_page().await?;
    let room_url = format!("{}/rooms/{room}/", chat.base_url);
    for page in [&a, &b] {
        page.show_on_failure("#messages");
        page.goto(&room_url).await?;
        page.wait_for(SUBSCRIBED, STEP).await?;
    }
    b.execute("window.__marker = 1", vec![]).await?;

    // B's network goes down: its socket closes (code 4001) and every reconnect attempt
    // fails until the network is back.
    go_offline(&b).await?;
    b.wait_for_gone(SUBSCRIBED, STEP).await?;

    let missed = [
        "one while offline",
        "two while offline",
        "three while offline",
    ];
    for text in missed {
        a.wait_for(SUBSCRIBED, STEP).await?;
        send(&a, text).await?;
        a.wait_for_text(MESSAGE_TEXTS, text, STEP).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.count("#messages li").await?, 0, "B is offline");

    back_online(&b).await?;
    b.wait_for(SUBSCRIBED, STEP).await?;
    b.wait_for_text(MESSAGE_TEXTS, missed[2], STEP).await?;
    assert_eq!(
        b.texts_of(MESSAGE_TEXTS).await?,
        missed,
        "all three, in order"
    );
    assert_eq!(marker(&b).await?, json!(1), "B caught up without a reload");

    let live = "live again";
    send(&a, live).await?;
    b.wait_for_text(MESSAGE_TEXTS, live, STEP).await?;
    let mut expected = missed.to_vec();
    expected.push(live);
    assert_eq!(b.texts_of(MESSAGE_TEXTS).await?, expected);
    b.screenshot(screenshot_path("offline-b.png")).await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_missed_more_than_the_history_refreshes_itself() -> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, refreshes_after_a_gap())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn refreshes_after_a_gap() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let room = chat.create_room("Gap").await;
    let browser = Browser::start().await?;
    let page = browser.open_page().await?;
    page.show_on_failure("#messages");
    page.goto(&format!("{}/rooms/{room}/", chat.base_url))
        .await?;
    page.wait_for(SUBSCRIBED, STEP).await?;
    // A Turbo refresh keeps the window but renders a new body: mark the old one.
    page.execute(
        "document.querySelector('#messages').dataset.old = 'yes'",
        vec![],
    )
    .await?;
    go_offline(&page).await?;
    page.wait_for_gone(SUBSCRIBED, STEP).await?;

    // More broadcasts than a stream keeps (100), then one message saved for real.
    let stream = format!("room:{room}");
    for n in 0..150 {
        turbo_model_tests::standalone::publish_with(
            &chat.turbo,
            &stream,
            &format!(
                "<turbo-stream action=\"append\" target=\"nowhere\"><template>{n}</template></turbo-stream>"
            ),
        );
    }
    assert_eq!(chat.post_message(room, "saved while away").await, 303);

    back_online(&page).await?;
    // The gap makes the page reload itself from the server, which has the message.
    page.wait_for_text(MESSAGE_TEXTS, "saved while away", STEP)
        .await?;
    assert_eq!(
        page.count("#messages[data-old]").await?,
        0,
        "the page was rendered again from the server"
    );
    page.wait_for(SUBSCRIBED, STEP).await?;
    assert_eq!(chat.post_message(room, "and live after").await, 303);
    page.wait_for_text(MESSAGE_TEXTS, "and live after", STEP)
        .await?;
    page.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_waits_until_the_pages_own_form_submission_ends() -> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, refresh_waits_for_submission())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

/// Turbo starts a refresh as a visit, and a visit stops the page's form submission in
/// flight (its request, or the redirect it is about to follow): the client holds
/// refreshes until the submission is over.
async fn refresh_waits_for_submission() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let room = chat.create_room("First").await;
    let browser = Browser::start().await?;
    let page = browser.open_page().await?;
    page.show_on_failure("h1");
    page.goto(&format!("{}/rooms/{room}/", chat.base_url))
        .await?;
    page.wait_for(SUBSCRIBED, STEP).await?;

    // A submission answered without HTML (a Turbo Stream response): the refresh runs
    // when its request ends.
    submission_starts(&page).await?;
    renamed_and_refresh_arrives(&chat, &page, room, "Second").await?;
    still_shows(&page, "First").await?;
    submission_ends(&page, "{ success: true }").await?;
    page.wait_for_text("h1", "Second", STEP).await?;

    // A submission answered with HTML (a redirect to follow, an error page to show):
    // the refresh waits until Turbo has rendered it.
    submission_starts(&page).await?;
    renamed_and_refresh_arrives(&chat, &page, room, "Third").await?;
    submission_ends(&page, "{ success: true, fetchResponse: { isHTML: true } }").await?;
    still_shows(&page, "Second").await?;
    page.execute(
        "document.dispatchEvent(new CustomEvent('turbo:render'))",
        vec![],
    )
    .await?;
    page.wait_for_text("h1", "Third", STEP).await?;
    page.close().await?;
    Ok(())
}

/// Turbo's announcement that the page started submitting a form.
async fn submission_starts(page: &Page) -> Result<(), BrowserError> {
    page.execute(
        "window.__submission = {};
         document.dispatchEvent(new CustomEvent('turbo:submit-start',
             { detail: { formSubmission: window.__submission } }));",
        vec![],
    )
    .await
    .map(drop)
}

/// Turbo's announcement that the submission's request ended, with `result`.
async fn submission_ends(page: &Page, result: &str) -> Result<(), BrowserError> {
    page.execute(
        &format!(
            "document.dispatchEvent(new CustomEvent('turbo:submit-end',
                 {{ detail: {{ formSubmission: window.__submission, ...{result} }} }}));"
        ),
        vec![],
    )
    .await
    .map(drop)
}

/// Renames the room behind the page's back, broadcasts a refresh of its stream, and
/// waits until the page has received that frame.
async fn renamed_and_refresh_arrives(
    chat: &ChatServer,
    page: &Page,
    room: i32,
    name: &str,
) -> Result<(), BrowserError> {
    let seq = "[...document.querySelector('turbo-model-stream-source')
                   .connection.positions.values()][0].seq";
    let before = page.execute(&format!("return {seq}"), vec![]).await?;
    chat.db
        .execute_unprepared(&format!(
            "UPDATE room SET name = '{name}' WHERE id = {room}"
        ))
        .await
        .expect("rename the room without hooks");
    turbo_model_tests::standalone::publish_with(
        &chat.turbo,
        &format!("room:{room}"),
        r#"<turbo-stream action="refresh"></turbo-stream>"#,
    );
    page.wait_until(
        "the refresh frame to reach the page",
        &format!("return {seq} === arguments[0] + 1"),
        vec![before],
        STEP,
    )
    .await
}

/// Half a second later, the page still shows the room as `name`: no refresh ran.
async fn still_shows(page: &Page, name: &str) -> Result<(), BrowserError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        page.text_of("h1").await?,
        name,
        "no refresh while the form is being submitted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_tokens_are_refused_refreshes_itself_with_backoff() -> Result<(), BrowserError>
{
    tokio::time::timeout(WHOLE_TEST, refreshes_for_new_tokens())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

/// A page signed with one key whose socket reaches a server with another key (as after
/// a key change without the old key kept): every subscription is refused with
/// `invalid_token`, and the page renders itself again for new tokens, backing off.
async fn refreshes_for_new_tokens() -> Result<(), BrowserError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use turbo_model_tests::standalone::Standalone;

    let renders = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&renders);
    let script = chat::assets::TurboScript::load();
    let turbo_js = script.url();
    let page = Standalone::start_with(
        turbo_model::Turbo::builder().template(
            "page.html",
            format!(
                "<!DOCTYPE html><html><head><script type=\"module\" src=\"{turbo_js}\"></script></head>\
                 <body><% turbo_subscribe \"log\" %><p id=\"renders\">{{{{ renders }}}}</p></body></html>"
            ),
        ),
        move |turbo| {
            let turbo = turbo.clone();
            axum::Router::new()
                .route(
                    "/",
                    axum::routing::get(move || {
                        let renders = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        let html = turbo
                            .render("page.html", &turbo_model::context! { renders })
                            .unwrap_or_else(|e| e.to_string());
                        async move { axum::response::Html(html) }
                    }),
                )
                .merge(script.router())
        },
    )
    .await;
    // Another key: it refuses the page's tokens. Any origin: the page is elsewhere.
    let other = Standalone::start_keyed(
        turbo_model::Turbo::builder()
            .secret("another key entirely, thirty-two bytes long")
            .allowed_origins(turbo_model::web::AllowedOrigins::Any),
        |_| axum::Router::new(),
    )
    .await;

    let browser = Browser::start().await?;
    let tab = browser.open_page().await?;
    tab.show_on_failure("body");
    let stop_before = format!(
        "sessionStorage.clear();
         const Real = window.WebSocket;
         window.WebSocket = class extends Real {{
             constructor(url, protocols) {{ super(url.replace('{}', '{}'), protocols); }}
         }};",
        page.address, other.address
    );
    tab.goto(&format!("{}/", page.base_url())).await?;
    tab.wait_for("#renders", STEP).await?;
    tab.execute(&stop_before, vec![]).await?;
    // The socket the page already opened is replaced: the next one reaches the other key.
    tab.execute(
        "document.querySelector('turbo-model-stream-source').connection.socket.close(4001, 'cut')",
        vec![],
    )
    .await?;
    let started = Instant::now();
    tab.wait_for_text("#renders", "2", STEP).await?;
    let first = started.elapsed();
    tab.wait_for_text("#renders", "3", STEP).await?;
    let second = started.elapsed() - first;
    assert!(
        first < Duration::from_secs(5),
        "the first refresh after {first:?}"
    );
    assert!(
        second >= Duration::from_millis(1500),
        "the second waited for the backoff: {second:?}"
    );
    tab.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_carries_the_request_id_turbo_sent_with_the_form() -> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, request_id_end_to_end())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

/// A creates a room through the form on the room list; the room list's refresh reaches
/// B with the `request-id` Turbo put on A's request, so A's page, which made the change,
/// can skip it.
async fn request_id_end_to_end() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    let browser = Browser::start().await?;
    let a = browser.open_page().await?;
    let b = browser.open_page().await?;
    for page in [&a, &b] {
        page.show_on_failure("body");
        page.goto(&format!("{}/", chat.base_url)).await?;
        page.wait_for(SUBSCRIBED, STEP).await?;
    }
    b.execute(
        "window.__refreshes = [];
         document.addEventListener('turbo:before-stream-render', (event) => {
             if (event.target.getAttribute('action') === 'refresh') {
                 window.__refreshes.push(event.target.getAttribute('request-id'));
             }
         });",
        vec![],
    )
    .await?;
    a.fill("#room-form input[name=name]", "Requested").await?;
    create_room_with_form(&a).await?;
    b.wait_until(
        "the room list's refresh",
        "return window.__refreshes.length > 0",
        vec![],
        STEP,
    )
    .await?;
    // The ids of the requests A's Turbo made, which it checks refreshes against.
    let sent = a
        .execute(
            "return Array.from(window.Turbo.session.recentRequests)",
            vec![],
        )
        .await?;
    let received = b.execute("return window.__refreshes[0]", vec![]).await?;
    assert!(
        received.is_string(),
        "the refresh has a request id: {received}"
    );
    assert!(
        sent.as_array().is_some_and(|ids| ids.contains(&received)),
        "the refresh's {received} is one of A's requests {sent}"
    );
    b.wait_for_text("#rooms li a", "Requested", STEP).await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_action_and_several_actions_in_one_message_reach_the_page()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, custom_and_several())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

/// The page registers its own `set_title` action in Turbo's `StreamActions`; one
/// broadcast carries it with an attribute, an append and an update: the page applies all
/// three from one message.
async fn custom_and_several() -> Result<(), BrowserError> {
    use turbo_model::{Content, StreamAction};
    use turbo_model_tests::standalone::Standalone;

    let script = chat::assets::TurboScript::load();
    let turbo_js = script.url();
    let page = Standalone::start_with(
        turbo_model::Turbo::builder().template(
            "page.html",
            format!(
                "<!DOCTYPE html><html><head><title>before</title>\
                 <script type=\"module\">\
                   import {{ StreamActions }} from \"{turbo_js}\";\
                   StreamActions.set_title = function () {{ document.title = this.getAttribute(\"title\"); }};\
                 </script></head>\
                 <body><% turbo_subscribe \"board\" %><ul id=\"log\"></ul><p id=\"count\">0</p></body></html>"
            ),
        ),
        move |turbo| {
            let turbo = turbo.clone();
            axum::Router::new()
                .route(
                    "/",
                    axum::routing::get(move || {
                        let html = turbo
                            .render("page.html", &turbo_model::Context::new())
                            .unwrap_or_else(|e| e.to_string());
                        async move { axum::response::Html(html) }
                    }),
                )
                .merge(script.router())
        },
    )
    .await;
    let browser = Browser::start().await?;
    let tab = browser.open_page().await?;
    tab.show_on_failure("body");
    tab.goto(&format!("{}/", page.base_url())).await?;
    tab.wait_for(SUBSCRIBED, STEP).await?;
    tab.execute(
        "window.__messages = 0;
         document.addEventListener('turbo:before-stream-render', () => { window.__messages += 1; });",
        vec![],
    )
    .await?;
    turbo_model::stream("board")
        .expect("a stream")
        .custom("set_title", None)
        .attribute("title", "1 new <item>")
        .and(StreamAction::append(Content::html("<li>first</li>")).target("log"))
        .and(StreamAction::update(Content::text("1")).target("count"))
        .send_with(&page.turbo)
        .expect("sent");
    tab.wait_for_text("#count", "1", STEP).await?;
    let seen = tab
        .execute(
            "return [document.title, document.querySelector('#log').innerHTML, window.__messages]",
            vec![],
        )
        .await?;
    assert_eq!(
        seen,
        serde_json::json!(["1 new <item>", "<li>first</li>", 3])
    );
    tab.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_edits_and_room_counts_are_live_on_sqlite() -> Result<(), BrowserError> {
    let chat = ChatServer::start().await;
    tokio::time::timeout(WHOLE_TEST, authors_edits_and_counts(&chat, "SQLite"))
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_edits_and_room_counts_are_live_on_postgresql() -> Result<(), BrowserError> {
    let chat = ChatServer::start_on_postgres().await;
    let outcome = tokio::time::timeout(WHOLE_TEST, authors_edits_and_counts(&chat, "PostgreSQL"))
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"));
    chat.stop().await;
    outcome
}

/// Signs `page` in as `name` on the room list.
async fn sign_in(page: &Page, index: &str, name: &str) -> Result<(), BrowserError> {
    page.goto(index).await?;
    page.fill("#session-form input[name=name]", name).await?;
    page.click("#session-form button[type=submit]").await?;
    page.wait_for_text("#user", name, STEP).await
}

/// Ada and Bob chat in a room while a third window watches the room list: each message
/// shows its author's name (read by an async hook), an edit replaces the message in both
/// windows, and the room list's count follows posts and deletes. Prints how long each
/// change took from the click to the other window's DOM.
async fn authors_edits_and_counts(chat: &ChatServer, database: &str) -> Result<(), BrowserError> {
    let browser = Browser::start().await?;
    let ada = browser.open_page().await?;
    let bob = browser.open_page().await?;
    let list = browser.open_page().await?;
    for page in [&ada, &bob, &list] {
        page.show_on_failure("body");
    }
    let index = format!("{}/", chat.base_url);
    sign_in(&ada, &index, "ada").await?;
    sign_in(&bob, &index, "bob").await?;
    list.goto(&index).await?;
    list.wait_for(SUBSCRIBED, STEP).await?;

    // Ada creates a room; the list refreshes itself and shows it with no messages.
    ada.fill("#room-form input[name=name]", "Counted").await?;
    create_room_with_form(&ada).await?;
    let room_url = ada.url().await?;
    let room = room_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let count = format!("#room_{room} .count");
    list.wait_for_text(&count, "0", STEP).await?;
    list.execute("window.__marker = 1", vec![]).await?;
    bob.goto(&room_url).await?;
    for page in [&ada, &bob] {
        page.wait_for(SUBSCRIBED, STEP).await?;
    }

    // Ada posts: Bob sees it with her name; the list counts it.
    let posted = Instant::now();
    send(&ada, "hello from ada").await?;
    bob.wait_for_text(MESSAGE_TEXTS, "hello from ada", STEP)
        .await?;
    let post_to_other = posted.elapsed();
    list.wait_for_text(&count, "1", STEP).await?;
    let post_to_count = posted.elapsed();
    assert_eq!(bob.texts_of("#messages li .author").await?, ["ada"]);
    assert_eq!(ada.texts_of("#messages li .author").await?, ["ada"]);

    // Bob answers: Ada sees his name.
    send(&bob, "hi ada, bob here").await?;
    ada.wait_for_text(MESSAGE_TEXTS, "hi ada, bob here", STEP)
        .await?;
    list.wait_for_text(&count, "2", STEP).await?;
    assert_eq!(ada.texts_of("#messages li .author").await?, ["ada", "bob"]);

    // Ada edits her message: it is replaced in both windows, author kept.
    let item = item_with_text(&ada, "hello from ada").await?;
    ada.click(&format!("#{item} details.edit summary")).await?;
    let field = format!("#edit_{item} input[name=text]");
    ada.fill(&field, "hello from ada (edited)").await?;
    let edited = Instant::now();
    ada.click(&format!("#edit_{item} button[type=submit]"))
        .await?;
    bob.wait_for_text(&format!("#{item} .text"), "hello from ada (edited)", STEP)
        .await?;
    let edit_to_other = edited.elapsed();
    ada.wait_for_text(&format!("#{item} .text"), "hello from ada (edited)", STEP)
        .await?;
    for page in [&ada, &bob] {
        assert_eq!(
            page.texts_of(MESSAGE_TEXTS).await?,
            ["hello from ada (edited)", "hi ada, bob here"]
        );
        assert_eq!(page.texts_of("#messages li .author").await?, ["ada", "bob"]);
    }

    // Bob deletes his message: gone in both windows, and the list counts one.
    let bobs = item_with_text(&bob, "hi ada, bob here").await?;
    let deleted = Instant::now();
    bob.click(&format!("#{bobs} form.delete button[type=submit]"))
        .await?;
    ada.wait_for_gone(&format!("#{bobs}"), STEP).await?;
    list.wait_for_text(&count, "1", STEP).await?;
    let delete_to_count = deleted.elapsed();
    assert_eq!(marker(&list).await?, json!(1), "the list was not reloaded");
    #[allow(
        clippy::print_stdout,
        reason = "the figures are the test's report (`--nocapture`)"
    )]
    {
        println!(
            "{database}: post → other window {} ms, post → room list count {} ms, \
         edit → other window {} ms, delete → room list count {} ms",
            post_to_other.as_millis(),
            post_to_count.as_millis(),
            edit_to_other.as_millis(),
            delete_to_count.as_millis()
        );
    }
    list.screenshot(screenshot_path(&format!("room-list-{database}.png")))
        .await?;
    for page in [ada, bob, list] {
        page.close().await?;
    }
    Ok(())
}
