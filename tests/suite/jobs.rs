//! The jobs example: a background task reports a long job's progress, then its result,
//! to every open page of the job, including a page opened in the middle of it.
//!
//! Socket tests of the exact frames, and a browser test (two headless Chromium windows;
//! it needs Chromium and chromedriver, `scripts/install-browser`, and fails without
//! them), all against the example served on 127.0.0.1:0.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use turbo_model::Turbo;
use turbo_model_tests::browser::{Browser, BrowserError, Page};
use turbo_model_tests::ws::Client;

/// The longest any single step may take: a broadcast, a page load, a form submission.
const STEP: Duration = Duration::from_secs(10);
/// The whole of one test, browsers included.
const WHOLE_TEST: Duration = Duration::from_secs(60);

const SUBSCRIBED: &str = "turbo-model-stream-source[connected]";
/// What every job finds.
const RESULT: &str = "Done: counted 78,498 primes below 1,000,000";

/// The jobs' `Turbo` of this test binary, built from their templates.
fn turbo() -> &'static Turbo {
    static TURBO: OnceLock<Turbo> = OnceLock::new();
    TURBO.get_or_init(|| {
        jobs::turbo_builder()
            .secret("jobs example test secret, 32+ bytes!!")
            .build()
            .unwrap_or_else(|e| panic!("the jobs' templates must load: {e}"))
    })
}

/// The jobs example on an ephemeral loopback port. Job ids are random, so parallel
/// tests never share a `job:{id}` stream.
struct JobsApp {
    base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl JobsApp {
    async fn start(step: Duration) -> Self {
        let app = jobs::router(turbo(), step);
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
            server,
        }
    }

    fn ws_url(&self) -> String {
        format!("{}/turbo-model/ws", self.base_url.replacen("http", "ws", 1))
    }

    /// An HTTP client that does not follow redirects, so the test sees them.
    fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STEP)
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"))
    }

    /// Starts a job through the form; returns its id.
    async fn start_job(&self) -> String {
        let response = self
            .http()
            .post(format!("{}/jobs/", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /jobs/: {e}"));
        assert_eq!(response.status(), 303, "starting a job redirects");
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let id = location
            .strip_prefix("/jobs/")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("redirect to the job's page, got {location:?}"));
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "a job id is 16 hex digits: {id:?}"
        );
        id.to_owned()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http()
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("body of {path}: {e}"));
        (status, body)
    }

    /// The job's page as rendered now.
    async fn page(&self, id: &str) -> Rendered {
        let (status, html) = self.get(&format!("/jobs/{id}/")).await;
        assert_eq!(status, 200, "the job's page:\n{html}");
        Rendered {
            token: attribute(&html, "streams"),
            since: attribute(&html, "since"),
            percent: attribute(&html, "value")
                .parse()
                .unwrap_or_else(|e| panic!("the progress value ({e}):\n{html}")),
            html,
        }
    }
}

impl Drop for JobsApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What a job's page showed, and when its request began.
struct Rendered {
    token: String,
    since: String,
    percent: u64,
    html: String,
}

/// The value of the first `name="…"` attribute in `html`.
fn attribute(html: &str, name: &str) -> String {
    html.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name}=\"…\" in:\n{html}"))
        .to_owned()
}

/// The frame a step sends: the progress element, replaced.
fn progress_frame(id: &str, seq: u64, percent: u64) -> Value {
    json!({
        "type": "message",
        "stream": format!("job:{id}"),
        "seq": seq,
        "html": format!(
            "<turbo-stream action=\"replace\" target=\"job-{id}-progress\"><template><div id=\"job-{id}-progress\" class=\"progress\">\n  <progress value=\"{percent}\" max=\"100\">{percent}%</progress>\n  <span class=\"percent\">{percent}%</span>\n</div>\n</template></turbo-stream>"
        ),
    })
}

/// The frame the end sends: the result element, replaced.
fn result_frame(id: &str, seq: u64) -> Value {
    json!({
        "type": "message",
        "stream": format!("job:{id}"),
        "seq": seq,
        "html": format!(
            "<turbo-stream action=\"replace\" target=\"job-{id}-result\"><template><p id=\"job-{id}-result\" class=\"result done\">{RESULT}</p>\n</template></turbo-stream>"
        ),
    })
}

/// Where the job's stream was when `page`'s request began: `(epoch, seq)`, as the
/// server answers the page's subscription.
async fn position_of(app: &JobsApp, page: &Rendered) -> (String, u64) {
    let mut client = Client::connect(&app.ws_url()).await;
    let reply = client.subscribe_from(&page.token, &page.since).await;
    let epoch = reply["epoch"].as_str().unwrap_or_default().to_owned();
    let seq = reply["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a seq: {reply}"));
    (epoch, seq)
}

/// Subscribes from where `page` was rendered and checks every frame from there to the
/// end: one progress frame per remaining step, then the result.
async fn follow_to_the_end(app: &JobsApp, id: &str, page: &Rendered) {
    let mut client = Client::connect(&app.ws_url()).await;
    let reply = client.subscribe_from(&page.token, &page.since).await;
    assert_eq!(reply["stream"], format!("job:{id}"));
    assert_eq!(reply.get("gap"), None, "nothing missed: {reply}");
    let mut seq = reply["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a seq: {reply}"));
    for percent in (page.percent + 10..=100).step_by(10) {
        seq += 1;
        assert_eq!(client.json().await, progress_frame(id, seq, percent));
    }
    assert_eq!(client.json().await, result_frame(id, seq + 1));
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_job_reports_ten_steps_then_its_result_as_exact_frames() {
    let app = JobsApp::start(Duration::from_millis(100)).await;
    let id = app.start_job().await;
    let page = app.page(&id).await;
    assert!(
        page.percent < 100,
        "rendered before the job's end:\n{}",
        page.html
    );
    assert!(
        page.html.contains(&format!(
            "<p id=\"job-{id}-result\" class=\"result\">Working…</p>"
        )),
        "no result yet:\n{}",
        page.html
    );
    follow_to_the_end(&app, &id, &page).await;

    let done = app.page(&id).await;
    assert_eq!(done.percent, 100);
    assert!(
        done.html.contains(&format!(
            "<p id=\"job-{id}-result\" class=\"result done\">{RESULT}</p>"
        )),
        "a finished job's page shows the result:\n{}",
        done.html
    );
}

#[tokio::test]
async fn a_page_rendered_mid_job_shows_the_progress_and_receives_exactly_the_rest() {
    let app = JobsApp::start(Duration::from_millis(150)).await;
    let id = app.start_job().await;
    let first = app.page(&id).await;
    let deadline = tokio::time::Instant::now() + STEP;
    let page = loop {
        let page = app.page(&id).await;
        if page.percent >= 30 {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job reached 30 % within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(page.percent < 100, "rendered mid-job:\n{}", page.html);
    // The stream's record dates from the first render: one frame per step since then.
    // The page's HTML and its position agree, because both were taken under the job's
    // lock.
    let (first_epoch, first_seq) = position_of(&app, &first).await;
    let (page_epoch, page_seq) = position_of(&app, &page).await;
    assert_eq!(page_epoch, first_epoch);
    assert_eq!(page_seq - first_seq, (page.percent - first.percent) / 10);
    follow_to_the_end(&app, &id, &page).await;
}

#[tokio::test]
async fn unknown_and_malformed_job_ids_are_not_found() {
    let app = JobsApp::start(Duration::from_millis(100)).await;
    for path in [
        "/jobs/0123456789abcdef/",
        "/jobs/nope/",
        "/jobs/0123456789ABCDEF/",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_result_reach_the_starting_page_and_one_opened_mid_job()
-> Result<(), BrowserError> {
    tokio::time::timeout(WHOLE_TEST, two_pages_on_one_job())
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE_TEST:?}"))
}

async fn two_pages_on_one_job() -> Result<(), BrowserError> {
    // Slow steps (5 s in all), so that B surely opens mid-job.
    let app = JobsApp::start(Duration::from_millis(500)).await;
    let browser = Browser::start().await?;
    let a = browser.open_page().await?;
    let b = browser.open_page().await?;
    a.show_on_failure("body");
    b.show_on_failure("body");

    a.goto(&format!("{}/", app.base_url)).await?;
    a.execute("window.__marker = 1", vec![]).await?;
    a.click("#job-form button[type=submit]").await?;
    a.wait_until(
        "the job's page after starting the job",
        r"return /^\/jobs\/[0-9a-f]{16}\/$/.test(location.pathname)
                  && document.querySelector('.progress') !== null",
        vec![],
        STEP,
    )
    .await?;
    let job_url = a.url().await?;
    let id = job_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let progress = format!("#job-{id}-progress progress");
    let result = format!("#job-{id}-result");
    a.wait_for(SUBSCRIBED, STEP).await?;
    record_progress(&a, &progress).await?;

    // B opens the job's link once A shows 30 %.
    a.wait_until(
        "A's progress to reach 30",
        "const bar = document.querySelector(arguments[0]);
         return bar !== null && Number(bar.getAttribute('value')) >= 30",
        vec![json!(progress)],
        STEP,
    )
    .await?;
    b.goto(&job_url).await?;
    let opened_at = record_progress(&b, &progress).await?;
    assert!(
        (30..100).contains(&opened_at),
        "B opened mid-job and shows where it was: {opened_at} %"
    );
    assert_eq!(b.text_of(&result).await?, "Working…");
    b.execute("window.__marker = 1", vec![]).await?;

    for page in [&a, &b] {
        page.wait_for_text(&result, RESULT, STEP).await?;
        assert_eq!(value_of(page, &progress).await?, 100);
        assert_eq!(
            page.text_of(&format!("#job-{id}-progress .percent"))
                .await?,
            "100%"
        );
        assert_eq!(
            page.attribute_of(&result, "class").await?.as_deref(),
            Some("result done")
        );
        assert_eq!(
            page.execute("return window.__marker ?? null", vec![])
                .await?,
            json!(1),
            "the page was never reloaded"
        );
    }
    // A watched from the start: every step once, in order. B from where it opened.
    let all: Vec<u64> = (0..=100).step_by(10).collect();
    let seen_by_a = seen_progress(&a).await?;
    assert!(
        (8..=all.len()).contains(&seen_by_a.len()),
        "A saw most steps live, each once: {seen_by_a:?}"
    );
    assert_eq!(
        seen_by_a,
        all[all.len() - seen_by_a.len()..],
        "A saw each step in order"
    );
    let from_b: Vec<u64> = (opened_at..=100).step_by(10).collect();
    assert_eq!(
        seen_progress(&b).await?,
        from_b,
        "B saw each remaining step"
    );

    b.screenshot(screenshot_path("jobs-b.png")).await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

async fn value_of(page: &Page, progress: &str) -> Result<u64, BrowserError> {
    let value = page
        .attribute_of(progress, "value")
        .await?
        .unwrap_or_default();
    Ok(value
        .parse()
        .unwrap_or_else(|e| panic!("a progress value ({e}): {value:?}")))
}

/// Starts recording each distinct value the progress bar shows, in `window.__seen`;
/// returns the value it shows now, the first one recorded.
async fn record_progress(page: &Page, progress: &str) -> Result<u64, BrowserError> {
    page.execute(
        "const selector = arguments[0];
         window.__seen = [];
         const note = () => {
             const bar = document.querySelector(selector);
             const value = bar && Number(bar.getAttribute('value'));
             if (bar && window.__seen[window.__seen.length - 1] !== value) {
                 window.__seen.push(value);
             }
         };
         note();
         new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true});
         return window.__seen[0] ?? null;",
        vec![json!(progress)],
    )
    .await
    .map(|first| {
        first
            .as_u64()
            .unwrap_or_else(|| panic!("`{progress}` shows a number: {first}"))
    })
}

async fn seen_progress(page: &Page) -> Result<Vec<u64>, BrowserError> {
    let seen = page.execute("return window.__seen", vec![]).await?;
    Ok(serde_json::from_value(seen.clone())
        .unwrap_or_else(|e| panic!("window.__seen is a list of numbers ({e}): {seen}")))
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/browser")
        .join(name)
}
