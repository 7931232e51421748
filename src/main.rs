//! The `boxoffice` binary: the command line, settings from the environment, logs, then the
//! server, or one report.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use boxoffice::reports::{Format, Report};
use boxoffice::store::StoreError;
use boxoffice::store::postgres::{connect_options, reports};
use clap::{Args, Parser, Subcommand};
use sqlx::{Connection, PgConnection};
use tracing_subscriber::EnvFilter;

/// Transactional cinema seat-booking server.
///
/// Serves the seat-map page and its API on BIND_ADDR. Every setting comes from the
/// environment or a .env file (see .env.example); without DATABASE_URL the in-memory store is
/// used and nothing persists.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a report from the PostgreSQL database at DATABASE_URL (which may be the
    /// read-only reporting role's) and exits: 0 on success, 1 on any error.
    Report(ReportArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// Which report.
    #[arg(value_enum)]
    name: Report,
    /// Only this movie's rows (its id, e.g. inception).
    #[arg(long, value_name = "ID")]
    movie: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[tokio::main]
async fn main() -> ExitCode {
    // --help and --version print and exit; anything else unknown is a usage error (exit 2).
    let cli = Cli::parse();
    let dotenv = dotenvy::dotenv();
    let reporting = cli.command.is_some();
    // A report's rows go to stdout, so its logs go to stderr, and only warnings by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(if reporting { "warn" } else { "info" })),
        )
        .with_ansi(if reporting {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        })
        .with_writer(move || -> Box<dyn Write> {
            if reporting {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        })
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
    let result = match cli.command {
        Some(Command::Report(args)) => report(&config, args).await,
        None => boxoffice::run(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if reporting => {
            eprintln!("boxoffice report: {}", chain(&*error));
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(error, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn report(config: &boxoffice::Config, args: ReportArgs) -> Result<(), boxoffice::BoxError> {
    let url = config
        .database_url
        .as_deref()
        .ok_or(StoreError::ReportsNeedPostgres)?;
    let options = connect_options(url, &config.pool)?;
    let connect = PgConnection::connect_with(&options);
    let mut conn = tokio::time::timeout(config.pool.acquire_timeout, connect)
        .await
        .map_err(|_| "cannot connect to PostgreSQL: no answer in time".to_owned())?
        .map_err(|error| format!("cannot connect to PostgreSQL: {error}"))?;
    let rows = reports::fetch(&mut conn, args.name, args.movie.as_deref()).await;
    let _ = conn.close().await;
    let rows = rows.map_err(|error| match error {
        StoreError::MovieNotFound => {
            format!("no movie {:?}", args.movie.unwrap_or_default()).into()
        }
        other => boxoffice::BoxError::from(other),
    })?;
    std::io::stdout().write_all(rows.render(args.format).as_bytes())?;
    Ok(())
}

/// An error and its causes, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
