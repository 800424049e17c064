//! The orders example: a domain event handler (not a model hook) moves an order through
//! its states and replaces the order's status badge on every open page of the order.
//!
//! Browser tests (two headless Chromium windows on one order; they need Chromium and
//! chromedriver, `scripts/install-browser`, and fail without them) and socket tests of
//! the exact frames, all against the example served on 127.0.0.1:0.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use orders::events::{EventBus, OrderEvent};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use turbo_model::Turbo;
use turbo_model_tests::browser::{Browser, BrowserError, Page};
use turbo_model_tests::ws::Client;

/// The longest any single step may take: a broadcast, a page load, a form submission.
const STEP: Duration = Duration::from_secs(10);
/// The whole of one test, browsers included.
const WHOLE_TEST: Duration = Duration::from_secs(60);

const SUBSCRIBED: &str = "turbo-model-stream-source[connected]";
/// The four steps after "placed": (badge text, badge class).
const STEPS: [(&str, &str); 4] = [
    ("Paid", "badge paid"),
    ("Packed", "badge packed"),
    ("Shipped", "badge shipped"),
    ("Delivered", "badge delivered"),
];

/// The orders' `Turbo` of this test binary, built from their templates.
fn turbo() -> &'static Turbo {
    static TURBO: OnceLock<Turbo> = OnceLock::new();
    TURBO.get_or_init(|| {
        orders::turbo_builder()
            .secret("orders example test secret, 32+ bytes")
            .build()
            .unwrap_or_else(|e| panic!("the orders' templates must load: {e}"))
    })
}

/// The orders example on an ephemeral loopback port, with an in-memory database.
struct Shop {
    base_url: String,
    events: EventBus,
    first_id: i32,
    server: tokio::task::JoinHandle<()>,
}

impl Shop {
    async fn start(courier_step: Duration) -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let db = orders::database("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("in-memory database: {e}"));
        // Every shop in this process shares its one hub: each gets its own order ids,
        // so that parallel tests never share an `order:{id}` stream.
        let base = (STARTED.fetch_add(1, Ordering::Relaxed) + 1) * 10_000;
        db.execute_unprepared(&format!(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('orders', {base})"
        ))
        .await
        .unwrap_or_else(|e| panic!("set the id range: {e}"));
        let events = EventBus::start(db.clone(), turbo());
        let app = orders::router(db, events.clone(), turbo(), courier_step);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local address: {e}"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{address}"),
            events,
            first_id: i32::try_from(base).unwrap_or(i32::MAX) + 1,
            server,
        }
    }

    fn ws_url(&self) -> String {
        format!("{}/turbo-model/ws", self.base_url.replacen("http", "ws", 1))
    }

    fn order_url(&self, id: i32) -> String {
        format!("{}/orders/{id}/", self.base_url)
    }

    /// An HTTP client that does not follow redirects, so the test sees them.
    fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STEP)
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"))
    }

    /// Places an order through the form; returns its id.
    async fn place(&self, item: &str) -> i32 {
        let response = self
            .http()
            .post(format!("{}/orders/", self.base_url))
            .form(&[("item", item)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /orders/: {e}"));
        assert_eq!(response.status(), 303, "placing an order redirects");
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        location
            .strip_prefix("/orders/")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("redirect to the order's page, got {location:?}"))
    }

    /// Presses the warehouse's "advance" button; returns the status and the redirect.
    async fn advance(&self, id: i32) -> (u16, String) {
        let response = self
            .http()
            .post(format!("{}/orders/{id}/advance", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST advance: {e}"));
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (response.status().as_u16(), location)
    }

    async fn page(&self, id: i32) -> String {
        self.http()
            .get(self.order_url(id))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET order: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("order body: {e}"))
    }

    /// A socket client subscribed with the token the order's page was rendered with.
    async fn subscriber(&self, id: i32) -> Client {
        let page = self.page(id).await;
        let token = attribute(&page, "streams");
        assert!(!token.contains(' '), "the page subscribes to one stream");
        let mut client = Client::connect(&self.ws_url()).await;
        let reply = client.subscribe(&token).await;
        assert_eq!(reply["stream"], format!("order:{id}"));
        client
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The value of the first `name="…"` attribute in `html`.
fn attribute(html: &str, name: &str) -> String {
    html.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name}=\"…\" in:\n{html}"))
        .to_owned()
}

/// The frame a status change sends to the order's stream.
fn badge_frame(id: i32, seq: u64, text: &str, class: &str) -> Value {
    json!({
        "type": "message",
        "stream": format!("order:{id}"),
        "seq": seq,
        "html": format!(
            "<turbo-stream action=\"replace\" target=\"order-{id}-status\"><template><span id=\"order-{id}-status\" class=\"{class}\">{text}</span>\n</template></turbo-stream>"
        ),
    })
}

#[tokio::test]
async fn each_advance_replaces_the_badge_with_the_exact_frame_through_to_delivered() {
    let shop = Shop::start(orders::COURIER_STEP).await;
    let id = shop.place("Blue teapot").await;
    assert_eq!(id, shop.first_id);
    let page = shop.page(id).await;
    assert!(
        page.contains(&format!(
            "<span id=\"order-{id}-status\" class=\"badge placed\">Placed</span>"
        )),
        "a new order's page shows it placed:\n{page}"
    );
    let mut a = shop.subscriber(id).await;
    let mut b = shop.subscriber(id).await;

    for (seq, (text, class)) in (1..).zip(STEPS) {
        assert_eq!(
            shop.advance(id).await,
            (303, format!("/orders/{id}/")),
            "advance redirects back to the order"
        );
        let expected = badge_frame(id, seq, text, class);
        assert_eq!(a.json().await, expected);
        assert_eq!(b.json().await, expected);
    }

    // Delivered is the end: pressing again changes and sends nothing.
    assert_eq!(shop.advance(id).await.0, 303);
    a.expect_silence(Duration::from_millis(300)).await;
    assert!(
        shop.page(id)
            .await
            .contains("class=\"badge delivered\">Delivered</span>")
    );
}

#[tokio::test]
async fn events_that_are_not_the_next_step_change_nothing() {
    let shop = Shop::start(orders::COURIER_STEP).await;
    let id = shop.place("Green kettle").await;
    let other = shop.place("Red mug").await;
    let mut client = shop.subscriber(id).await;
    let mut other_client = shop.subscriber(other).await;

    // Twice the same event (a double click), then one that skips steps.
    for event in [
        OrderEvent::PaymentReceived { order_id: id },
        OrderEvent::PaymentReceived { order_id: id },
        OrderEvent::Delivered { order_id: id },
    ] {
        shop.events
            .publish(event)
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
    }
    assert_eq!(
        client.json().await,
        badge_frame(id, 1, "Paid", "badge paid")
    );
    client.expect_silence(Duration::from_millis(300)).await;
    other_client.expect_silence(Duration::from_millis(10)).await;
    assert!(
        shop.page(id)
            .await
            .contains("class=\"badge paid\">Paid</span>")
    );

    // The next step is taken; the other order's pages hear nothing of it.
    shop.events
        .publish(OrderEvent::Packed { order_id: id })
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(
        client.json().await,
        badge_frame(id, 2, "Packed", "badge packed")
    );
    other_client
        .expect_silence(Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_cross_site_advance_is_refused_and_sends_nothing() {
    let shop = Shop::start(orders::COURIER_STEP).await;
    let id = shop.place("Teacup").await;
    let mut client = shop.subscriber(id).await;
    let status = shop
        .http()
        .post(format!("{}/orders/{id}/advance", shop.base_url))
        .header("origin", "http://elsewhere.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST advance: {e}"))
        .status();
    assert_eq!(status, 403);
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advancing_in_one_window_replaces_the_badge_in_the_other_through_every_state()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, warehouse_and_customer())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn warehouse_and_customer() -> Result<(), BrowserError> {
    let shop = Shop::start(orders::COURIER_STEP).await;
    let browser = Browser::start().await?;
    let a = browser.open_page().await?;
    let b = browser.open_page().await?;

    // A places the order through the form and lands on its page.
    a.goto(&format!("{}/", shop.base_url)).await?;
    a.fill("#order-form input[name=item]", "Blue teapot")
        .await?;
    a.click("#order-form button[type=submit]").await?;
    a.wait_until(
        "the order's page after placing the order",
        r"return /^\/orders\/\d+\/$/.test(location.pathname)
                  && document.querySelector('#advance-form') !== null",
        vec![],
        STEP,
    )
    .await?;
    let order_url = a.url().await?;
    let id: i32 = order_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an order URL, got {order_url}"));
    let badge = format!("#order-{id}-status");

    b.goto(&order_url).await?;
    for page in [&a, &b] {
        page.show_on_failure("main");
        page.wait_for(SUBSCRIBED, STEP).await?;
        assert_eq!(
            badge_of(page, &badge).await?,
            ("Placed".into(), "badge placed".into())
        );
    }
    // A full page load would lose these; Turbo Stream actions keep them.
    b.execute("window.__marker = 1", vec![]).await?;
    record_badges(&b, &badge).await?;

    // Counts A's Turbo visits: each press ends with one, the redirect back to the order.
    a.execute(
        "window.__visits = 0;
         document.addEventListener('turbo:load', () => { window.__visits += 1; });",
        vec![],
    )
    .await?;
    for (visits, (text, class)) in (1..).zip(STEPS) {
        a.wait_for(SUBSCRIBED, STEP).await?;
        a.click("#advance-form button[type=submit]").await?;
        wait_for_badge(&b, &badge, text, class).await?;
        assert_eq!(badge_of(&b, &badge).await?, (text.into(), class.into()));
        // A's redirect back has rendered (so its next press is on the new page), and
        // its badge agrees, whether it came with that page or as a broadcast.
        a.wait_until(
            "A's visit back to the order after pressing advance",
            "return window.__visits >= arguments[0]",
            vec![json!(visits)],
            STEP,
        )
        .await?;
        wait_for_badge(&a, &badge, text, class).await?;
    }

    assert_eq!(
        b.execute("return window.__marker ?? null", vec![]).await?,
        json!(1),
        "B was never reloaded"
    );
    assert_eq!(
        seen_badges(&b).await?,
        ["Placed", "Paid", "Packed", "Shipped", "Delivered"],
        "B showed every state once, in order"
    );
    // Delivered: the buttons go away by CSS alone, in both windows.
    for page in [&a, &b] {
        assert_eq!(display_of(page, ".actions").await?, "none");
        assert_eq!(display_of(page, ".finished").await?, "block");
    }
    b.screenshot(screenshot_path("orders-b.png")).await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_shipping_moves_the_badge_by_itself_until_delivered() -> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, simulated_courier())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn simulated_courier() -> Result<(), BrowserError> {
    let shop = Shop::start(Duration::from_millis(300)).await;
    let id = shop.place("Yellow jug").await;
    let badge = format!("#order-{id}-status");
    let browser = Browser::start().await?;
    let a = browser.open_page().await?;
    let b = browser.open_page().await?;
    for page in [&a, &b] {
        page.show_on_failure("main");
        page.goto(&shop.order_url(id)).await?;
        page.wait_for(SUBSCRIBED, STEP).await?;
    }
    b.execute("window.__marker = 1", vec![]).await?;
    record_badges(&b, &badge).await?;

    a.click("#simulate-form button[type=submit]").await?;
    wait_for_badge(&b, &badge, "Delivered", "badge delivered").await?;
    wait_for_badge(&a, &badge, "Delivered", "badge delivered").await?;
    assert_eq!(
        seen_badges(&b).await?,
        ["Placed", "Paid", "Packed", "Shipped", "Delivered"],
        "B showed every state once, in order, with nobody pressing anything"
    );
    assert_eq!(
        b.execute("return window.__marker ?? null", vec![]).await?,
        json!(1),
        "B was never reloaded"
    );
    a.close().await?;
    b.close().await?;
    Ok(())
}

/// The badge's text and class.
async fn badge_of(page: &Page, badge: &str) -> Result<(String, String), BrowserError> {
    let class = page.attribute_of(badge, "class").await?.unwrap_or_default();
    Ok((page.text_of(badge).await?, class))
}

async fn wait_for_badge(
    page: &Page,
    badge: &str,
    text: &str,
    class: &str,
) -> Result<(), BrowserError> {
    page.wait_until(
        &format!("the badge `{badge}` to read {text:?} with the class {class:?}"),
        "const badge = document.querySelector(arguments[0]);
         return badge !== null && badge.textContent === arguments[1]
             && badge.getAttribute('class') === arguments[2]",
        vec![json!(badge), json!(text), json!(class)],
        STEP,
    )
    .await
}

/// Starts recording each distinct text the badge shows, in `window.__seen`.
async fn record_badges(page: &Page, badge: &str) -> Result<(), BrowserError> {
    page.execute(
        "const selector = arguments[0];
         window.__seen = [];
         const note = () => {
             const badge = document.querySelector(selector);
             if (badge && window.__seen[window.__seen.length - 1] !== badge.textContent) {
                 window.__seen.push(badge.textContent);
             }
         };
         note();
         new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});",
        vec![json!(badge)],
    )
    .await
    .map(drop)
}

async fn seen_badges(page: &Page) -> Result<Vec<String>, BrowserError> {
    let seen = page.execute("return window.__seen", vec![]).await?;
    Ok(serde_json::from_value(seen.clone())
        .unwrap_or_else(|e| panic!("window.__seen is a list of strings ({e}): {seen}")))
}

async fn display_of(page: &Page, selector: &str) -> Result<String, BrowserError> {
    let display = page
        .execute(
            "return getComputedStyle(document.querySelector(arguments[0])).display",
            vec![json!(selector)],
        )
        .await?;
    Ok(display.as_str().unwrap_or_default().to_owned())
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/browser")
        .join(name)
}
