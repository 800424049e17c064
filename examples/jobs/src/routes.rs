//! The pages: start a job, watch a job.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chat::assets::TurboScript;
use turbo_model::{Turbo, context};

use crate::job::{JobId, Jobs, StartError};
use crate::task;

#[derive(Clone)]
struct App {
    jobs: Jobs,
    step: Duration,
    turbo: Turbo,
    turbo_js: TurboScript,
}

/// All of the routes, with turbo-model's endpoint merged in. A job takes
/// [`task::STEPS`] steps of at least `step` each ([`task::STEP`] in the binary).
pub fn router(turbo: &Turbo, step: Duration) -> Router {
    let app = App {
        jobs: Jobs::default(),
        step,
        turbo: turbo.clone(),
        turbo_js: TurboScript::load(),
    };
    Router::new()
        .route("/", get(index))
        .route("/jobs/", post(start_job))
        .route("/jobs/{id}/", get(show_job))
        .with_state(app.clone())
        // Turbo from npm at /static/turbo.js, as the chat serves it.
        .merge(app.turbo_js.router())
        // Forms posted from other sites' pages are refused (cross-site request forgery).
        .layer(axum::middleware::from_fn(
            turbo_model::web::reject_cross_site,
        ))
        .merge(turbo.router())
}

/// A failed request: a status and a message for the person who sent it.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<turbo_model::Error> for Failure {
    fn from(error: turbo_model::Error) -> Self {
        tracing::error!(%error, "render error");
        Self(StatusCode::INTERNAL_SERVER_ERROR, "template error".into())
    }
}

type Page = Result<Response, Failure>;

fn render(app: &App, template: &str, mut context: turbo_model::Context) -> Page {
    context.insert("turbo_js", app.turbo_js.url());
    Ok(Html(app.turbo.render(template, &context)?).into_response())
}

async fn index(State(app): State<App>) -> Page {
    let limit = task::grouped(task::LIMIT);
    let steps = task::STEPS;
    render(&app, "jobs/index.html", context! { limit, steps })
}

async fn start_job(State(app): State<App>) -> Page {
    let job = app.jobs.create().map_err(|error| {
        let status = match error {
            StartError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            StartError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, error.to_string())
    })?;
    tracing::info!(job = %job.id, "job started");
    task::spawn(app.jobs.clone(), job.id, app.step, &app.turbo);
    Ok(Redirect::to(&format!("/jobs/{}/", job.id)).into_response())
}

async fn show_job(State(app): State<App>, Path(id): Path<String>) -> Page {
    let not_found = || Failure(StatusCode::NOT_FOUND, format!("no job {id}"));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    // Rendered under the job's lock: the page subscribes from the time it is rendered,
    // and no progress may be reported between reading the job and that.
    app.jobs
        .read(job_id, |job| {
            let job_stream = job.stream_name();
            render(&app, "jobs/show.html", context! { job, job_stream })
        })
        .ok_or_else(not_found)?
}
