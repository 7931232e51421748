//! The `boxoffice` binary: the command line, settings from the environment, logs, then the
//! server.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Transactional cinema seat-booking server.
///
/// Serves the seat-map page and its API on BIND_ADDR. Every setting comes from the
/// environment or a .env file (see .env.example); without DATABASE_URL the in-memory store is
/// used and nothing persists.
#[derive(Parser)]
#[command(version)]
struct Cli {}

#[tokio::main]
async fn main() -> ExitCode {
    // --help and --version print and exit; anything else unknown is a usage error (exit 2).
    let Cli {} = Cli::parse();
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
