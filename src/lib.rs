//! boxoffice: a transactional cinema seat-booking server.

use std::future::Future;

use tokio::net::TcpListener;

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod identity;
pub mod reaper;
pub mod reports;
pub mod seating;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use http::app;
use store::{MemoryStore, PgStore, SeatStore};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Binds, picks the store, and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), BoxError> {
    let listener = TcpListener::bind(config.bind_addr).await?;
    match &config.database_url {
        Some(url) => {
            let store = PgStore::connect(
                url,
                config.database_direct_url.as_deref(),
                &config.pool,
                config.hold,
                config.hold_queue(),
            )
            .await?;
            store.set_report_time_zone(&config.report_time_zone).await?;
            tracing::info!("using PostgreSQL; migrations are up to date");
            serve(listener, store, &config, shutdown_signal()).await?;
        }
        None => {
            tracing::warn!(
                "DATABASE_URL is not set: using the in-memory store. Nothing persists; \
                 every hold and booking is lost when the server stops"
            );
            serve(
                listener,
                MemoryStore::new(config.hold),
                &config,
                shutdown_signal(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Serves `store` on `listener` with the reaper running, until `shutdown` completes; then
/// finishes the requests in flight.
pub async fn serve<S: SeatStore>(
    listener: TcpListener,
    store: S,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reaper = reaper::spawn(
        store.clone(),
        config.reaper_interval,
        config.reaper_batch_size,
    );
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // Event streams never end by themselves: they are ended first, so that the requests in
    // flight can finish.
    let stop_streams = tokio_util::sync::CancellationToken::new();
    let shutdown = {
        let stop_streams = stop_streams.clone();
        async move {
            shutdown.await;
            stop_streams.cancel();
        }
    };
    let app = app(store, config, stop_streams);
    http::connections::serve(listener, app, config.connections, shutdown).await;
    reaper.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("install the SIGINT handler");
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        () = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
