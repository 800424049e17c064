//! Runs the shop: `cargo run -p orders`, place an order, and open its page in two
//! windows; press "Advance" (or "Simulate shipping") in one and watch the other.
//!
//! `DATABASE_URL` picks the SQLite database (default: a file next to this crate, created
//! on first run; `sqlite::memory:` keeps nothing). `PORT` picks the port on 127.0.0.1
//! (default 3001). `TURBO_MODEL_SECRET` signs stream names.

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
            tracing::error!("orders stopped: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| orders::default_database_url());
    let db = orders::database(&database_url)
        .await
        .map_err(|e| format!("database {database_url}: {e}"))?;
    let turbo = orders::turbo_builder().install()?;
    let events = orders::events::EventBus::start(db.clone(), &turbo);
    let app = orders::router(db, events, &turbo, orders::COURIER_STEP);
    let port = std::env::var("PORT").unwrap_or_else(|_| "3001".into());
    let address = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    tracing::info!(database = %database_url, "orders is running at {url}");
    #[allow(
        clippy::print_stdout,
        reason = "the URL to open is the program's output"
    )]
    {
        println!("Orders running at {url} (place an order, open it in two windows; Ctrl-C stops)");
    }
    turbo
        .serve(listener, app, std::time::Duration::from_secs(5))
        .await?;
    tracing::info!("orders stopped");
    Ok(())
}
