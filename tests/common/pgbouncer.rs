//! PgBouncer in transaction mode in front of the tests' PostgreSQL: one per test process,
//! started on first use on a free port of 127.0.0.1 and killed when the process exits.
//! Needs Debian's `pgbouncer` (`scripts/test` installs it); without it these tests fail.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::TestDb;

/// How long PgBouncer may take to listen.
const START_WITHIN: Duration = Duration::from_secs(10);

pub struct PgBouncer {
    port: u16,
    user: String,
}

static BOUNCER: OnceLock<PgBouncer> = OnceLock::new();
static CHILD: Mutex<Option<Child>> = Mutex::new(None);

impl PgBouncer {
    /// The one of this test process.
    pub fn get() -> &'static Self {
        BOUNCER.get_or_init(Self::start)
    }

    /// `db` through the pooler.
    pub fn url(&self, db: &TestDb) -> String {
        let name = reqwest::Url::parse(&db.url).expect("test database URL");
        let name = name.path().trim_start_matches('/');
        format!("postgres://{}@127.0.0.1:{}/{name}", self.user, self.port)
    }

    fn start() -> Self {
        let binary = binary();
        let server = reqwest::Url::parse(super::server_url()).expect("the tests' server URL");
        let user = match server.username() {
            "" => "postgres".to_owned(),
            user => user.to_owned(),
        };
        let mut upstream = format!(
            "host={} port={} user={user}",
            server.host_str().unwrap_or("127.0.0.1"),
            server.port().unwrap_or(5432)
        );
        if let Some(password) = server.password() {
            upstream.push_str(&format!(" password={password}"));
        }
        let dir = tempfile::Builder::new()
            .prefix("boxoffice-pgbouncer-")
            .tempdir()
            .expect("temp dir")
            .keep();
        // PgBouncer refuses to run as root; as the postgres user it must read its config.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = super::free_port();
        let config = dir.join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n\
                 * = {upstream}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = any\n\
                 pool_mode = transaction\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 max_client_conn = 2000\n\
                 default_pool_size = 40\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

        let mut command = Command::new(&binary);
        command
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = postgres_user();
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (listening, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("listening on 127.0.0.1") {
                    let _ = listening.send(Ok(()));
                }
                log.push(line);
            }
            let _ = listening.send(Err(log.join("\n")));
        });
        match heard.recv_timeout(START_WITHIN) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("PgBouncer exited before listening:\n{log}"),
            Err(_) => panic!("PgBouncer did not listen within {START_WITHIN:?}"),
        }
        *CHILD.lock().unwrap() = Some(child);
        unsafe { libc::atexit(stop) };
        Self { port, user }
    }
}

extern "C" fn stop() {
    if let Some(mut child) = CHILD.lock().ok().and_then(|mut child| child.take()) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pgbouncer"))
            .find(|path| path.is_file())
    });
    on_path
        .or_else(|| Some(Path::new("/usr/sbin/pgbouncer").to_owned()).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "the pooler tests need PgBouncer: run `scripts/test`, which installs it \
                 (Debian: apt-get install pgbouncer)"
            )
        })
}

/// The postgres user's ids, for running PgBouncer as it when we are root.
fn postgres_user() -> (u32, u32) {
    let entry = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(
        !entry.is_null(),
        "PgBouncer refuses to run as root, and there is no postgres user to run it as \
         (Debian's postgresql package makes one)"
    );
    let entry = unsafe { &*entry };
    (entry.pw_uid, entry.pw_gid)
}
