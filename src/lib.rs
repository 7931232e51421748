//! boxoffice: a transactional cinema seat-booking server.

use std::future::Future;

use tokio::net::TcpListener;

pub mod booking;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod identity;
pub mod reaper;
pub mod reports;
pub mod store;
pub mod telemetry;

pub use config::Config;
use config::DatabaseUrl;
pub use http::app;
use store::{Backend, MemoryStore, PgStore, Store};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server's two listeners: the public one (`BIND_ADDR`), and the metrics' own
/// (`METRICS_ADDR`).
pub struct Listeners {
    pub public: TcpListener,
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds both addresses of `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let bind = |addr| async move {
            TcpListener::bind(addr).await.map_err(|error| {
                std::io::Error::new(error.kind(), format!("cannot listen on {addr}: {error}"))
            })
        };
        Ok(Self {
            public: bind(config.bind_addr).await?,
            metrics: bind(config.metrics_addr).await?,
        })
    }
}

/// Binds, picks the store, and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), BoxError> {
    let listeners = Listeners::bind(&config).await?;
    match &config.database_url {
        Some(url) => {
            let store = PgStore::connect(
                url.expose(),
                config.database_direct_url.as_ref().map(DatabaseUrl::expose),
                &config.pool,
                config.hold,
                config.hold_queue(),
            )
            .await?;
            store.set_report_time_zone(&config.report_time_zone).await?;
            tracing::info!("using PostgreSQL; migrations are up to date");
            serve(listeners, store.into(), &config, shutdown_signal()).await?;
        }
        None => {
            tracing::warn!(
                "DATABASE_URL is not set: using the in-memory store. Nothing persists; \
                 every hold and booking is lost when the server stops"
            );
            let store = MemoryStore::new(config.hold);
            serve(listeners, store.into(), &config, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Serves `backend` on `listeners` with the reaper running, until `shutdown` completes; then
/// finishes the requests in flight.
pub async fn serve<S: Store>(
    listeners: Listeners,
    backend: Backend<S>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    // Event streams never end by themselves: they are ended first, so that the requests in
    // flight can finish.
    let stop_streams = tokio_util::sync::CancellationToken::new();
    let store = backend.store.clone();
    let app = app(backend, config, stop_streams.clone())?;
    let reaper = reaper::spawn(
        store.clone(),
        config.reaper_interval,
        config.reaper_batch_size,
    );
    tracing::info!(addr = %listeners.metrics.local_addr()?, "serving metrics");
    tracing::info!(addr = %listeners.public.local_addr()?, "listening");
    let shutdown = {
        let stop_streams = stop_streams.clone();
        async move {
            shutdown.await;
            stop_streams.cancel();
        }
    };
    let metrics = http::connections::serve(
        listeners.metrics,
        http::metrics_app(store),
        config.connections.clone(),
        stop_streams.clone().cancelled_owned(),
    );
    let public =
        http::connections::serve(listeners.public, app, config.connections.clone(), shutdown);
    tokio::join!(public, metrics);
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
