//! turbo-model outside the ORM, part two: a background job reports its progress.
//!
//! "Start job" creates a job, spawns a Tokio task for it and sends the browser to the
//! job's page. The task counts primes in ten steps and, after each one, replaces the
//! progress bar on every open page of the job; at the end it replaces the result. Jobs
//! live in memory ([`job::Jobs`]), so a page opened in the middle of a job shows where
//! it is, then follows it. The live part is the broadcasts in [`task`] and
//! `<% turbo_subscribe job_stream %>` in `templates/jobs/show.html`.
//!
//! The binary (`src/main.rs`) wires these functions together; the tests use them to run
//! the app on an ephemeral port.

pub mod job;
mod routes;
pub mod task;

use std::path::PathBuf;

pub use routes::router;

/// Where the templates live, whatever the working directory.
pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A [`turbo_model::Builder`] with the jobs' templates; call `.install()` on it.
pub fn turbo_builder() -> turbo_model::Builder {
    turbo_model::Turbo::builder().templates(templates_dir())
}
