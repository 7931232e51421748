//! The `boxoffice` binary: the command line, settings from the environment, logs, then the
//! server, or one report.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use boxoffice::reports::{Format, Report, RowWriter};
use boxoffice::store::StoreError;
use boxoffice::store::postgres::{reports, session_options};
use clap::{Args, Parser, Subcommand};
use futures_util::TryStreamExt;
use sqlx::{Connection, PgConnection};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // A report's rows go to stdout, so its logs go to stderr, and only warnings by default
    // (not sqlx's about slow statements: a report may well be one).
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(if reporting {
                "warn,sqlx::query=error"
            } else {
                "info"
            })
        }))
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

/// Streams the report to stdout (CSV and JSON row by row). No statement timeout: a report of
/// a long history may take longer than any request should. One session of its own, so
/// straight to PostgreSQL (`DATABASE_DIRECT_URL`) when there is a pooler in between.
async fn report(config: &boxoffice::Config, args: ReportArgs) -> Result<(), boxoffice::BoxError> {
    let url = config
        .database_direct_url
        .as_ref()
        .or(config.database_url.as_ref())
        .ok_or(StoreError::ReportsNeedPostgres)?;
    let options = session_options(url.expose().parse()?).application_name("boxoffice report");
    let connect = PgConnection::connect_with(&options);
    let mut conn = tokio::time::timeout(config.pool.acquire_timeout, connect)
        .await
        .map_err(|_| "cannot connect to PostgreSQL: no answer in time".to_owned())?
        .map_err(|error| format!("cannot connect to PostgreSQL: {error}"))?;
    let movie = args.movie.as_deref();
    let columns = reports::columns(&mut conn, args.name, movie)
        .await
        .map_err(|error| match error {
            StoreError::MovieNotFound => format!("no movie {:?}", movie.unwrap_or_default()).into(),
            other => boxoffice::BoxError::from(other),
        })?;
    let mut out = RowWriter::new(args.format, columns, std::io::stdout().lock())?;
    let mut rows = reports::rows(&mut conn, args.name, movie);
    while let Some(row) = rows.try_next().await? {
        out.row(&row)?;
    }
    out.finish()?;
    drop(rows);
    let _ = conn.close().await;
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
