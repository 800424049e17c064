//! Runs the chat: `cargo run -p chat`, then open the printed URL in two windows.
//!
//! `DATABASE_URL` picks the database (default: a SQLite file next to this crate,
//! created and migrated on first run; a `postgres://` URL works too). `BIND` and `PORT`
//! pick the address (default 127.0.0.1:3000). `TURBO_MODEL_SECRET` signs stream names.
//! `METRICS_PORT` serves turbo-model's metrics for Prometheus at `/metrics` on that port
//! of 127.0.0.1 (default: not served).

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
            tracing::error!("chat stopped: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| chat::default_database_url());
    let db = chat::database(&database_url)
        .await
        .map_err(|e| format!("database {database_url}: {e}"))?;
    let turbo = chat::turbo_builder(&db).install()?;
    let app = chat::router(db, &turbo);
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let address = format!("{bind}:{port}");
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    if let Ok(port) = std::env::var("METRICS_PORT") {
        let address = format!("127.0.0.1:{port}");
        let metrics = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| format!("cannot serve the metrics on {address}: {e}"))?;
        let routes = turbo.metrics_router("/metrics");
        tokio::spawn(async move {
            if let Err(error) = axum::serve(metrics, routes).await {
                tracing::error!(%error, "the metrics listener stopped");
            }
        });
        tracing::info!("metrics at http://{address}/metrics");
    }
    let url = format!("http://{}/", listener.local_addr()?);
    tracing::info!(database = %database_url, "chat is running at {url}");
    #[allow(
        clippy::print_stdout,
        reason = "the URL to open is the program's output"
    )]
    {
        println!("Chat running at {url} (open it in two windows; Ctrl-C stops)");
    }
    turbo
        .serve(listener, app, std::time::Duration::from_secs(5))
        .await?;
    tracing::info!("chat stopped");
    Ok(())
}
