//! The `boxoffice` binary: settings from the environment, logs, then the server.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let dotenv = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    if let Err(error) = dotenv
        && !error.not_found()
    {
        tracing::error!(%error, "cannot read .env");
        return ExitCode::FAILURE;
    }
    let config = match boxoffice::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "bad setting");
            return ExitCode::FAILURE;
        }
    };
    match boxoffice::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error, "server failed");
            ExitCode::FAILURE
        }
    }
}
