//! Runs the jobs example: `cargo run -p jobs`, press "Start job" and watch the progress
//! bar fill; open the job's link in a second window mid-way and it follows too.
//!
//! `PORT` picks the port on 127.0.0.1 (default 3002). `TURBO_MODEL_SECRET` signs stream
//! names.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("jobs stopped: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let turbo = jobs::turbo_builder().install()?;
    let app = jobs::router(&turbo, jobs::task::STEP);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3002".into());
    let address = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    tracing::info!("jobs is running at {url}");
    #[allow(
        clippy::print_stdout,
        reason = "the URL to open is the program's output"
    )]
    {
        println!("Jobs running at {url} (start a job and watch it; Ctrl-C stops)");
    }
    turbo
        .serve(listener, app, std::time::Duration::from_secs(5))
        .await?;
    tracing::info!("jobs stopped");
    Ok(())
}
