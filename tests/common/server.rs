//! The PostgreSQL server the tests' databases live on, chosen once per test binary:
//!
//! 1. `DATABASE_URL`, when it is set;
//! 2. otherwise a container started through testcontainers, when a Docker engine answers
//!    (image `TEST_POSTGRES_IMAGE`, default the official `postgres:16`); it is removed when
//!    the test binary exits, or is interrupted;
//! 3. otherwise a throwaway cluster from the local PostgreSQL binaries (`TEST_POSTGRES_BIN`,
//!    else `PATH`, else `/usr/lib/postgresql/*/bin`), stopped when the test binary exits.
//!
//! With an engine that has the image neither locally nor from a registry, the tests fall back
//! to the cluster and say how to build the image (`scripts/postgres-image`).
//! `TEST_POSTGRES=container` or `TEST_POSTGRES=cluster` insists on one of the last two and
//! fails instead of falling back (CI uses it to prove the container path). The choice is
//! written to standard error, past the test harness's capture.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::bollard::errors::Error as BollardError;
use testcontainers_modules::testcontainers::core::error::ClientError;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt, TestcontainersError};

/// Server settings the container and the cluster both get. The races open more connections
/// than PostgreSQL's default of 100; durability doesn't matter to a throwaway server.
const SETTINGS: &[&str] = &["max_connections=300", "fsync=off"];

pub const DEFAULT_IMAGE: &str = "postgres:16";
const IMAGE_SCRIPT: &str = "scripts/postgres-image";

/// Where the server came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    DatabaseUrl,
    Container,
    Cluster,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::DatabaseUrl => "database-url",
            Source::Container => "container",
            Source::Cluster => "cluster",
        }
    }
}

pub struct Server {
    pub source: Source,
    /// The server's URL, naming its `postgres` database.
    pub url: String,
    /// A throwaway cluster's directory, removed when the process exits.
    pub cluster_dir: Option<PathBuf>,
}

/// The server, chosen and started on first use.
pub fn get() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = choose();
        let from = match (server.source, &server.cluster_dir) {
            (Source::DatabaseUrl, _) => "DATABASE_URL".to_owned(),
            (Source::Container, _) => "a container".to_owned(),
            (Source::Cluster, dir) => {
                format!("a throwaway cluster in {}", dir.as_ref().unwrap().display())
            }
        };
        say(&format!(
            "tests use PostgreSQL from {from}: {}",
            without_password(&server.url)
        ));
        server
    })
}

fn choose() -> Server {
    if let Some(url) = setting("DATABASE_URL") {
        return Server::new(Source::DatabaseUrl, url, None);
    }
    let insist = setting("TEST_POSTGRES");
    match insist.as_deref() {
        None | Some("auto" | "container") => {}
        Some("cluster") => return cluster_server(),
        Some(other) => {
            panic!("TEST_POSTGRES is {other:?}; it takes auto (the default), container or cluster")
        }
    }
    let image = image();
    match container(&image) {
        Ok(url) => return Server::new(Source::Container, url, None),
        Err(why) if insist.is_some_and(|insist| insist == "container") => {
            panic!("TEST_POSTGRES=container, but no container of {image} could be started: {why}")
        }
        Err(NoContainer::NoEngine(why)) => say(&format!(
            "no Docker engine answered ({why}); trying local binaries"
        )),
        Err(NoContainer::NoImage(why)) => say(&format!(
            "the Docker engine has no image {image} and cannot pull it ({why}); trying local \
             binaries. On a machine without a registry, {IMAGE_SCRIPT} builds a local one: \
             run it, then set TEST_POSTGRES_IMAGE=postgres:15"
        )),
        Err(NoContainer::Failed(why)) => {
            panic!("a container of {image} was created but did not come up: {why}")
        }
    }
    cluster_server()
}

fn cluster_server() -> Server {
    let (url, dir) = throwaway_cluster();
    Server::new(Source::Cluster, url, Some(dir))
}

impl Server {
    fn new(source: Source, url: String, cluster_dir: Option<PathBuf>) -> Self {
        Self {
            source,
            url,
            cluster_dir,
        }
    }
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn image() -> String {
    setting("TEST_POSTGRES_IMAGE").unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
}

/// Writes to standard error directly: the test harness captures `eprintln!`.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "== {message}");
}

fn without_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if scheme < at => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// A container

enum NoContainer {
    NoEngine(String),
    NoImage(String),
    Failed(String),
}

impl std::fmt::Display for NoContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoContainer::NoEngine(why) => write!(f, "no Docker engine answered: {why}"),
            NoContainer::NoImage(why) => write!(
                f,
                "the image is neither here nor pullable ({why}); {IMAGE_SCRIPT} builds one"
            ),
            NoContainer::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// The container lives in a static, which is never dropped: `remove_container` takes it out
/// and drops it (which removes it) when the process exits. testcontainers' watchdog removes
/// it when the process is interrupted instead.
static CONTAINER: Mutex<Option<Container<Postgres>>> = Mutex::new(None);

/// Starts a PostgreSQL container of `image` (`name:tag`) and returns its URL.
fn container(image: &str) -> Result<String, NoContainer> {
    let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let request = Postgres::default()
        .with_host_auth()
        .with_name(name)
        .with_tag(tag)
        .with_cmd(SETTINGS.iter().flat_map(|setting| ["-c", setting]));
    // The sync runner blocks on a runtime of its own, which can't run inside the test's.
    let (container, url) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let container = request.start().map_err(classify)?;
                let failed = |error: TestcontainersError| NoContainer::Failed(error.to_string());
                let host = container.get_host().map_err(failed)?;
                let port = container.get_host_port_ipv4(5432).map_err(failed)?;
                Ok((
                    container,
                    format!("postgres://postgres@{host}:{port}/postgres"),
                ))
            })
            .join()
            .expect("the container start panicked")
    })?;
    *CONTAINER.lock().unwrap() = Some(container);
    unsafe { libc::atexit(remove_container) };
    Ok(url)
}

fn classify(error: TestcontainersError) -> NoContainer {
    match error {
        TestcontainersError::Client(ClientError::PullImage { err, .. }) => {
            NoContainer::NoImage(err.to_string())
        }
        // The client could not be made, or the engine did not answer its first request.
        TestcontainersError::Client(ClientError::Init(err)) => {
            NoContainer::NoEngine(err.to_string())
        }
        TestcontainersError::Client(ClientError::CreateContainer(err))
            if !matches!(err, BollardError::DockerResponseServerError { .. }) =>
        {
            NoContainer::NoEngine(err.to_string())
        }
        other => NoContainer::Failed(other.to_string()),
    }
}

extern "C" fn remove_container() {
    let container = CONTAINER.lock().ok().and_then(|mut slot| slot.take());
    drop(container);
}

// ---------------------------------------------------------------------------------------
// A throwaway cluster

/// Starts a private PostgreSQL cluster for this test process and returns its URL and
/// directory. It is stopped and its directory removed when the process exits.
fn throwaway_cluster() -> (String, PathBuf) {
    let cluster = Cluster::start(SETTINGS);
    let url = cluster.url();
    let dir = cluster.dir.clone();
    STOP_CLUSTER.set(cluster).ok();
    unsafe { libc::atexit(stop_cluster) };
    (url, dir)
}

static STOP_CLUSTER: OnceLock<Cluster> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(cluster) = STOP_CLUSTER.get() {
        cluster.stop();
    }
}

/// A PostgreSQL cluster of its own on a free port of 127.0.0.1, owned by the postgres user,
/// with trust authentication; stopped (immediately) and removed when dropped.
pub struct Cluster {
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    as_root: bool,
}

impl Cluster {
    /// initdb and start, with `settings` (`name=value`) besides the defaults.
    pub fn start(settings: &[&str]) -> Self {
        let bin = postgres_bin_dir().unwrap_or_else(|places| {
            panic!(
                "Tests need PostgreSQL, and none was found: DATABASE_URL is not set, no Docker \
                 engine could start a container of {image}, and there are no PostgreSQL server \
                 binaries (initdb, pg_ctl) in {places}. Provide one of them:\n\
                 - set DATABASE_URL to a server where this user may create databases \
                   (e.g. postgres://postgres@127.0.0.1:5432/postgres);\n\
                 - start a Docker engine (with no registry, {IMAGE_SCRIPT} builds an image; then \
                   set TEST_POSTGRES_IMAGE=postgres:15);\n\
                 - install PostgreSQL's server binaries (Debian: apt-get install postgresql).",
                image = image(),
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("boxoffice-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let cluster = Self {
            bin,
            port: super::free_port(),
            dir,
            as_root,
        };
        run(cluster
            .pg("initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "-D",
            ])
            .arg(cluster.dir.join("data")));
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            cluster.port,
            cluster.dir.display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        std::fs::write(cluster.dir.join("options"), &options).expect("write options");
        cluster.pg_ctl(&["-w", "-o", &options, "-l"], "start");
        cluster
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m immediate`: every session is cut off at once, as in a crash, and
    /// the cluster recovers from its write-ahead log before it accepts connections again.
    pub fn restart_immediately(&self) {
        let options = std::fs::read_to_string(self.dir.join("options")).expect("options");
        self.pg_ctl(&["-w", "-m", "immediate", "-o", &options, "-l"], "restart");
    }

    fn pg_ctl(&self, args: &[&str], action: &str) {
        let mut command = self.pg("pg_ctl");
        command.arg("-D").arg(self.dir.join("data")).args(args);
        if args.last() == Some(&"-l") {
            command.arg(self.dir.join("log"));
        }
        run(command.arg(action));
    }

    fn pg(&self, tool: &str) -> Command {
        pg_command(&self.bin, tool, self.as_root)
    }

    fn stop(&self) {
        let stopped = self
            .pg("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output();
        if stopped.is_ok_and(|output| output.status.success()) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL tool, run as the postgres user when we are root.
fn pg_command(bin: &Path, tool: &str, as_root: bool) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        Command::new(bin.join(tool))
    }
}

/// The directory with initdb and pg_ctl, or the places searched.
fn postgres_bin_dir() -> Result<PathBuf, String> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = setting("TEST_POSTGRES_BIN") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(format!("TEST_POSTGRES_BIN ({})", dir.display()))
        };
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|dir| has_tools(dir)));
    let installed = || {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| has_tools(bin))
            .collect();
        versions.sort();
        versions.pop()
    };
    on_path
        .or_else(installed)
        .ok_or_else(|| "PATH or /usr/lib/postgresql/*/bin".to_owned())
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
