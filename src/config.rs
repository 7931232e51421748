//! Every setting, read from the environment with its default. `.env.example` lists them all.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::booking::HoldPolicy;
use crate::store::postgres::{HoldQueue, PoolSettings, Pooler};

/// What one client may cost.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// From when a connection is ready for a request (just opened, or idle after an answer)
    /// until that request's whole header has arrived; then the connection is closed. So also
    /// how long an idle keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// Most bytes of a request line and its headers; beyond it 431 and the connection closes.
    pub max_header_bytes: usize,
    /// Most connections open at once; beyond it new ones wait in the kernel's queue.
    pub max_connections: usize,
    /// Most connections open at once from one address (`MAX_CONNECTIONS_PER_IP`); beyond it a
    /// new one is answered 503 `too_many_connections` and closed. `0`: no cap.
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap: the trusted proxies, through which many
    /// clients come (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpAddr>,
    /// How long an answer may wait for the client to take any of its bytes
    /// (`RESPONSE_WRITE_TIMEOUT_SECS`); then the connection is closed.
    pub response_write_timeout: Duration,
    /// How long, after the shutdown signal, the connections still open may take to finish
    /// (`SHUTDOWN_TIMEOUT_SECS`); then they are closed.
    pub shutdown_timeout: Duration,
}

/// The smallest header limit hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// The limits, per minute; `0` turns one off.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    /// Seats one identity may ask to hold per minute (`HOLD_SEATS_PER_MINUTE`).
    pub seats_per_user: u32,
    /// Seats one client address may ask to hold per minute (`HOLD_SEATS_PER_MINUTE_PER_IP`).
    pub seats_per_ip: u32,
    /// Identities one client address may make per minute (`IDENTITIES_PER_MINUTE_PER_IP`).
    pub identities_per_ip: u32,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: the in-memory store, nothing persists.
    pub database_url: Option<DatabaseUrl>,
    /// PostgreSQL itself, when `database_url` goes through a pooler in transaction mode: for
    /// migrations and the listening connection. `None`: `database_url`.
    pub database_direct_url: Option<DatabaseUrl>,
    pub bind_addr: SocketAddr,
    /// Where `GET /metrics` is served (`METRICS_ADDR`): a listener of its own, off the public
    /// one.
    pub metrics_addr: SocketAddr,
    pub hold: HoldPolicy,
    pub reaper_interval: Duration,
    pub reaper_batch_size: u32,
    pub pool: PoolSettings,
    pub static_dir: PathBuf,
    pub request_timeout: Duration,
    /// How long a request's body may take to arrive, from its header (`BODY_READ_TIMEOUT_SECS`).
    pub body_read_timeout: Duration,
    pub max_body_bytes: usize,
    /// Most single-seat holds waiting for a worker.
    pub hold_queue_limit: usize,
    /// The time zone report days are cut in, written to the database at start-up.
    pub report_time_zone: String,
    /// The bearer token of `GET /reports/{name}`; `None`: the route is off.
    pub reports_token: Option<Secret>,
    /// Most event streams open at once in this process; beyond it a stream answers 503. Zero
    /// turns streams off (pages poll).
    pub max_event_streams: usize,
    /// One address's share of them (`MAX_EVENT_STREAMS_PER_IP`); `0`: no share.
    pub max_event_streams_per_ip: usize,
    /// Most seats one v1 hold may ask for (`MAX_SEATS_PER_HOLD`).
    pub max_seats_per_hold: usize,
    /// Most idempotency keys one API user may have kept at once, over their 24 hours
    /// (`MAX_IDEMPOTENCY_KEYS_PER_USER`); past it a keyed change is refused 429.
    pub max_idempotency_keys_per_user: u64,
    /// Whether the tutorial's routes are served (`SEED_API`).
    pub seed_api: bool,
    /// Signs API tokens (`IDENTITY_SECRET`); `None`: the store's own secret.
    pub identity_secret: Option<Secret>,
    /// Still accepted for tokens, during a rotation (`IDENTITY_SECRET_PREVIOUS`).
    pub identity_secret_previous: Option<Secret>,
    /// What one HTTP client may cost: `HEADER_READ_TIMEOUT_SECS`, `MAX_HEADER_BYTES`,
    /// `MAX_CONNECTIONS`.
    pub connections: ConnectionLimits,
    /// What one client may take per minute (`limits`).
    pub rate_limits: RateLimits,
}

/// A setting that must not appear in logs: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// A database URL, whose `Debug` hides its password (in the authority or as a `password`
/// parameter) and shows the rest: where the server connects is no secret, and helps.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: String) -> Self {
        Self(url)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
            return "(hidden: not a URL)".to_owned();
        };
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let parameters: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                            format!("{key}=***")
                        }
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", parameters.join("&"))
            }
            None => tail.to_owned(),
        };
        format!("{}{authority}{tail}", &url[..scheme_end])
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

/// Shortest identity secret accepted: 32 characters.
const MIN_IDENTITY_SECRET_LEN: usize = 32;

/// The shortest `REPORTS_TOKEN` accepted: a short one could be guessed.
const MIN_REPORTS_TOKEN_LEN: usize = 16;

/// Time kept, beyond the database's own deadlines, for the answer to reach the client.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is not valid: {reason}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    reason: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            database_direct_url: None,
            bind_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            hold: HoldPolicy::default(),
            reaper_interval: Duration::from_secs(5),
            reaper_batch_size: 500,
            pool: PoolSettings::default(),
            static_dir: PathBuf::from("static"),
            request_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(5),
            max_body_bytes: 16 * 1024,
            hold_queue_limit: 4096,
            report_time_zone: "UTC".into(),
            reports_token: None,
            max_event_streams: 1000,
            max_event_streams_per_ip: 100,
            max_seats_per_hold: 8,
            max_idempotency_keys_per_user: 1000,
            seed_api: true,
            identity_secret: None,
            identity_secret_previous: None,
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_secs(5),
                max_header_bytes: 16 * 1024,
                max_connections: 4096,
                max_connections_per_ip: 256,
                trusted_proxies: Vec::new(),
                response_write_timeout: Duration::from_secs(10),
                shutdown_timeout: Duration::from_secs(20),
            },
            rate_limits: RateLimits {
                seats_per_user: 120,
                seats_per_ip: 1200,
                identities_per_ip: 600,
                trusted_proxies: Vec::new(),
            },
        }
    }
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let trusted_proxies = addresses(&get, "TRUSTED_PROXIES")?;
        let config = Self {
            database_url: get("DATABASE_URL").map(DatabaseUrl::new),
            database_direct_url: get("DATABASE_DIRECT_URL").map(DatabaseUrl::new),
            bind_addr: parse(&get, "BIND_ADDR", d.bind_addr)?,
            metrics_addr: parse(&get, "METRICS_ADDR", d.metrics_addr)?,
            hold: hold_policy(&get, d.hold)?,
            reaper_interval: seconds(&get, "REAPER_INTERVAL_SECS", d.reaper_interval)?,
            reaper_batch_size: positive(&get, "REAPER_BATCH_SIZE", d.reaper_batch_size)?,
            pool: pool_settings(&get, &d.pool)?,
            static_dir: get("STATIC_DIR").map_or(d.static_dir, PathBuf::from),
            request_timeout: seconds(&get, "REQUEST_TIMEOUT_SECS", d.request_timeout)?,
            body_read_timeout: seconds(&get, "BODY_READ_TIMEOUT_SECS", d.body_read_timeout)?,
            max_body_bytes: positive(&get, "MAX_BODY_BYTES", d.max_body_bytes)?,
            hold_queue_limit: positive(&get, "HOLD_QUEUE_LIMIT", d.hold_queue_limit)?,
            report_time_zone: get("REPORT_TIME_ZONE")
                .map_or(d.report_time_zone, |tz| tz.trim().to_owned()),
            reports_token: get("REPORTS_TOKEN").map(Secret::new),
            max_event_streams: parse(&get, "MAX_EVENT_STREAMS", d.max_event_streams)?,
            max_event_streams_per_ip: parse(
                &get,
                "MAX_EVENT_STREAMS_PER_IP",
                d.max_event_streams_per_ip,
            )?,
            max_seats_per_hold: positive(&get, "MAX_SEATS_PER_HOLD", d.max_seats_per_hold)?,
            max_idempotency_keys_per_user: positive(
                &get,
                "MAX_IDEMPOTENCY_KEYS_PER_USER",
                d.max_idempotency_keys_per_user,
            )?,
            seed_api: parse(&get, "SEED_API", d.seed_api)?,
            identity_secret: secret(&get, "IDENTITY_SECRET")?,
            identity_secret_previous: secret(&get, "IDENTITY_SECRET_PREVIOUS")?,
            connections: connection_limits(&get, &d.connections, &trusted_proxies)?,
            rate_limits: rate_limits(&get, &d.rate_limits, trusted_proxies)?,
        };
        config.check()?;
        Ok(config)
    }

    /// The rules between settings, and the lower bounds no single setting's parse knows.
    fn check(&self) -> Result<(), ConfigError> {
        if self.connections.max_header_bytes < MIN_HEADER_BYTES {
            return Err(ConfigError {
                name: "MAX_HEADER_BYTES",
                value: self.connections.max_header_bytes.to_string(),
                reason: format!("must be at least {MIN_HEADER_BYTES}"),
            });
        }
        if let Some(token) = &self.reports_token
            && token.expose().len() < MIN_REPORTS_TOKEN_LEN
        {
            return Err(ConfigError {
                name: "REPORTS_TOKEN",
                value: "(hidden)".into(),
                reason: format!(
                    "must be at least {MIN_REPORTS_TOKEN_LEN} characters, or empty to turn \
                     the reports route off"
                ),
            });
        }
        if self.pool.pooler == Pooler::Transaction && self.database_direct_url.is_none() {
            return Err(ConfigError {
                name: "DATABASE_DIRECT_URL",
                value: String::new(),
                reason: "must be set with DATABASE_POOLER=transaction: migrations and the \
                         listening connection need a session of their own, straight to \
                         PostgreSQL"
                    .into(),
            });
        }
        if self.body_read_timeout >= self.request_timeout {
            return Err(ConfigError {
                name: "BODY_READ_TIMEOUT_SECS",
                value: self.body_read_timeout.as_secs_f64().to_string(),
                reason: "must be less than REQUEST_TIMEOUT_SECS, so that a stalled body is \
                         answered 408 before the request times out"
                    .into(),
            });
        }
        if self.connections.shutdown_timeout <= self.request_timeout {
            return Err(ConfigError {
                name: "SHUTDOWN_TIMEOUT_SECS",
                value: self.connections.shutdown_timeout.as_secs_f64().to_string(),
                reason: "must be more than REQUEST_TIMEOUT_SECS, so that every request in flight \
                         at shutdown is answered before its connection is closed"
                    .into(),
            });
        }
        if self.hold_queue().start_within.is_zero() {
            return Err(ConfigError {
                name: "REQUEST_TIMEOUT_SECS",
                value: self.request_timeout.as_secs_f64().to_string(),
                reason: format!(
                    "must be more than DB_ACQUIRE_TIMEOUT_SECS + DB_STATEMENT_TIMEOUT_SECS + {}, \
                     so that a change that has started is answered before the request times out",
                    ANSWER_MARGIN.as_secs()
                ),
            });
        }
        Ok(())
    }

    /// The hold queue: a hold waits for a worker only as long as what is left of its time
    /// still covers the database's deadlines (a connection, then one statement) and the answer.
    pub fn hold_queue(&self) -> HoldQueue {
        let database = self.pool.acquire_timeout + self.pool.statement_timeout + ANSWER_MARGIN;
        HoldQueue {
            capacity: self.hold_queue_limit,
            start_within: self.request_timeout.saturating_sub(database),
        }
    }
}

/// The rules holds are granted under.
fn hold_policy(
    get: &impl Fn(&'static str) -> Option<String>,
    d: HoldPolicy,
) -> Result<HoldPolicy, ConfigError> {
    Ok(HoldPolicy {
        ttl: seconds(get, "HOLD_TTL_SECS", d.ttl)?,
        max_holds_per_user: positive(get, "MAX_HOLDS_PER_USER", d.max_holds_per_user)?,
        max_holds_per_address: parse(get, "MAX_HOLDS_PER_IP", d.max_holds_per_address)?,
        max_extensions: parse(get, "MAX_HOLD_EXTENSIONS", d.max_extensions)?,
        max_lifetime: seconds(get, "MAX_HOLD_LIFETIME_SECS", d.max_lifetime)?,
        rehold_window: seconds(get, "REHOLD_WINDOW_SECS", d.rehold_window)?,
        session_retention: seconds(get, "SESSION_RETENTION_SECS", d.session_retention)?,
    })
}

/// The database pool.
fn pool_settings(
    get: &impl Fn(&'static str) -> Option<String>,
    d: &PoolSettings,
) -> Result<PoolSettings, ConfigError> {
    Ok(PoolSettings {
        max_connections: positive(get, "DB_MAX_CONNECTIONS", d.max_connections)?,
        acquire_timeout: seconds(get, "DB_ACQUIRE_TIMEOUT_SECS", d.acquire_timeout)?,
        statement_timeout: seconds(get, "DB_STATEMENT_TIMEOUT_SECS", d.statement_timeout)?,
        pooler: parse(get, "DATABASE_POOLER", d.pooler)?,
    })
}

/// What one HTTP client may cost.
fn connection_limits(
    get: &impl Fn(&'static str) -> Option<String>,
    d: &ConnectionLimits,
    trusted_proxies: &[IpAddr],
) -> Result<ConnectionLimits, ConfigError> {
    Ok(ConnectionLimits {
        header_read_timeout: seconds(get, "HEADER_READ_TIMEOUT_SECS", d.header_read_timeout)?,
        max_header_bytes: parse(get, "MAX_HEADER_BYTES", d.max_header_bytes)?,
        max_connections: positive(get, "MAX_CONNECTIONS", d.max_connections)?,
        max_connections_per_ip: parse(get, "MAX_CONNECTIONS_PER_IP", d.max_connections_per_ip)?,
        trusted_proxies: trusted_proxies.to_vec(),
        response_write_timeout: seconds(
            get,
            "RESPONSE_WRITE_TIMEOUT_SECS",
            d.response_write_timeout,
        )?,
        shutdown_timeout: seconds(get, "SHUTDOWN_TIMEOUT_SECS", d.shutdown_timeout)?,
    })
}

/// What one client may take per minute.
fn rate_limits(
    get: &impl Fn(&'static str) -> Option<String>,
    d: &RateLimits,
    trusted_proxies: Vec<IpAddr>,
) -> Result<RateLimits, ConfigError> {
    Ok(RateLimits {
        seats_per_user: parse(get, "HOLD_SEATS_PER_MINUTE", d.seats_per_user)?,
        seats_per_ip: parse(get, "HOLD_SEATS_PER_MINUTE_PER_IP", d.seats_per_ip)?,
        identities_per_ip: parse(get, "IDENTITIES_PER_MINUTE_PER_IP", d.identities_per_ip)?,
        trusted_proxies,
    })
}

fn parse<T: FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
            value,
        }),
    }
}

fn positive<T: FromStr + Default + PartialOrd>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = parse(get, name, default)?;
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError {
            name,
            value: get(name).unwrap_or_default(),
            reason: "must be greater than zero".into(),
        })
    }
}

/// A comma-separated list of IP addresses.
fn addresses(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(value) = get(name) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(|ip| ip.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::net::AddrParseError| ConfigError {
            name,
            reason: format!("{e}: a comma-separated list of IP addresses"),
            value: value.clone(),
        })
}

fn secret(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Secret>, ConfigError> {
    match get(name) {
        Some(value) if value.len() < MIN_IDENTITY_SECRET_LEN => Err(ConfigError {
            name,
            value: "(hidden)".into(),
            reason: format!(
                "must be at least {MIN_IDENTITY_SECRET_LEN} characters (say, `openssl rand \
                 -hex 32`), or empty to use the secret the store keeps"
            ),
        }),
        value => Ok(value.map(Secret::new)),
    }
}

fn seconds(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let secs: f64 = positive(get, name, default.as_secs_f64())?;
    Duration::try_from_secs_f64(secs).map_err(|e| ConfigError {
        name,
        value: get(name).unwrap_or_default(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let config = from(&[]).unwrap();
        assert_eq!(config.database_url, None);
        assert_eq!(config.bind_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(config.hold.ttl, Duration::from_secs(120));
        assert_eq!(config.hold.max_holds_per_user, 8);
        assert_eq!(config.hold.max_holds_per_address, 48);
        assert_eq!(config.hold.rehold_window, Duration::from_secs(600));
        assert_eq!(config.hold_queue().capacity, 4096);
        assert_eq!(config.hold_queue().start_within, Duration::from_secs(2));
        assert_eq!(config.report_time_zone, "UTC");
        assert_eq!(config.reports_token, None);
        assert_eq!(config.max_event_streams, 1000);
        assert_eq!(config.pool.pooler, Pooler::Direct);
        assert_eq!(config.database_direct_url, None);
        assert_eq!(config.hold.max_extensions, 2);
        assert_eq!(config.hold.max_lifetime, Duration::from_secs(600));
        assert_eq!(config.max_seats_per_hold, 8);
        assert_eq!(config.hold.session_retention, Duration::from_secs(3600));
        assert!(config.seed_api);
        assert_eq!(config.identity_secret, None);
        assert_eq!(
            config.connections.header_read_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(config.connections.max_header_bytes, 16 * 1024);
        assert_eq!(config.connections.max_connections, 4096);
        assert_eq!(config.rate_limits.seats_per_user, 120);
        assert_eq!(config.rate_limits.seats_per_ip, 1200);
        assert_eq!(config.rate_limits.identities_per_ip, 600);
        assert!(config.rate_limits.trusted_proxies.is_empty());
        let behind = from(&[
            ("TRUSTED_PROXIES", "10.0.0.1, ::1"),
            ("HOLD_SEATS_PER_MINUTE", "0"),
        ]);
        let behind = behind.unwrap();
        assert_eq!(behind.rate_limits.trusted_proxies.len(), 2);
        assert_eq!(behind.rate_limits.seats_per_user, 0, "zero turns it off");
    }

    #[test]
    fn identity_secrets_are_long_and_never_shown() {
        let long = "k".repeat(32);
        let config = from(&[
            ("IDENTITY_SECRET", long.as_str()),
            ("IDENTITY_SECRET_PREVIOUS", &"p".repeat(40)),
            ("SEED_API", "false"),
        ])
        .unwrap();
        assert_eq!(
            config.identity_secret.as_ref().map(Secret::expose),
            Some(long.as_str())
        );
        assert!(!config.seed_api);
        assert!(!format!("{config:?}").contains(&long));
        let short = from(&[("IDENTITY_SECRET", "too-short")]).unwrap_err();
        assert!(!short.to_string().contains("too-short"), "{short}");
    }

    #[test]
    fn the_debug_output_of_the_settings_shows_no_secret() {
        let config = from(&[
            (
                "DATABASE_URL",
                "postgres://app:pooler-pass@pgbouncer:6432/boxoffice",
            ),
            (
                "DATABASE_DIRECT_URL",
                "postgres://app@db:5432/boxoffice?sslmode=require&password=direct-pass",
            ),
            ("DATABASE_POOLER", "transaction"),
            ("REPORTS_TOKEN", "reports-token-0123456789"),
            ("IDENTITY_SECRET", &"current-secret-".repeat(3)),
            ("IDENTITY_SECRET_PREVIOUS", &"previous-secret-".repeat(3)),
        ])
        .unwrap();
        let shown = format!("{config:?}");
        for secret in [
            "pooler-pass",
            "direct-pass",
            "reports-token",
            "current-secret",
            "previous-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(
            shown.contains("postgres://app:***@pgbouncer:6432/boxoffice"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://app@db:5432/boxoffice?sslmode=require&password=***"),
            "{shown}"
        );
    }

    #[test]
    fn settings_are_read_by_their_names() {
        let config = from(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("BIND_ADDR", "127.0.0.1:9000"),
            ("METRICS_ADDR", "0.0.0.0:9100"),
            ("HOLD_TTL_SECS", "0.5"),
            ("MAX_HOLDS_PER_USER", "3"),
            ("MAX_HOLDS_PER_IP", "0"),
            ("REHOLD_WINDOW_SECS", "90"),
            ("DB_MAX_CONNECTIONS", "32"),
            ("REPORT_TIME_ZONE", "Europe/Paris"),
            ("REPORTS_TOKEN", "0123456789abcdef"),
            ("MAX_EVENT_STREAMS", "0"),
            ("DATABASE_POOLER", "transaction"),
            ("DATABASE_DIRECT_URL", "postgres://x:5432/y"),
        ])
        .unwrap();
        assert_eq!(config.pool.pooler, Pooler::Transaction);
        assert_eq!(
            config.database_direct_url.as_ref().map(DatabaseUrl::expose),
            Some("postgres://x:5432/y")
        );
        assert_eq!(
            config.database_url.as_ref().map(DatabaseUrl::expose),
            Some("postgres://x/y")
        );
        assert_eq!(config.bind_addr.port(), 9000);
        assert_eq!(config.metrics_addr.to_string(), "0.0.0.0:9100");
        assert_eq!(config.hold.ttl, Duration::from_millis(500));
        assert_eq!(config.hold.max_holds_per_user, 3);
        assert_eq!(config.hold.max_holds_per_address, 0, "zero lifts the cap");
        assert_eq!(config.hold.rehold_window, Duration::from_secs(90));
        assert_eq!(config.pool.max_connections, 32);
        assert_eq!(config.report_time_zone, "Europe/Paris");
        assert_eq!(
            config.reports_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
        assert_eq!(config.max_event_streams, 0, "zero turns streams off");
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        for (name, value) in [
            ("HOLD_TTL_SECS", "soon"),
            ("HOLD_TTL_SECS", "0"),
            ("HOLD_TTL_SECS", "-3"),
            ("MAX_HOLDS_PER_USER", "0"),
            ("MAX_HOLDS_PER_IP", "-1"),
            ("REHOLD_WINDOW_SECS", "0"),
            ("BIND_ADDR", "nowhere"),
            ("HOLD_QUEUE_LIMIT", "0"),
            // Shorter than the database's deadlines (2 s + 5 s) and the answer's margin.
            ("REQUEST_TIMEOUT_SECS", "8"),
            ("REPORTS_TOKEN", "short"),
            ("MAX_EVENT_STREAMS", "many"),
            ("DATABASE_POOLER", "session"),
            ("MAX_HEADER_BYTES", "1024"),
            ("MAX_CONNECTIONS", "0"),
            ("BODY_READ_TIMEOUT_SECS", "10"),
            ("TRUSTED_PROXIES", "10.0.0.1, proxy"),
            ("HOLD_SEATS_PER_MINUTE", "-1"),
            ("HEADER_READ_TIMEOUT_SECS", "0"),
            ("SHUTDOWN_TIMEOUT_SECS", "10"),
            ("RESPONSE_WRITE_TIMEOUT_SECS", "0"),
            ("MAX_CONNECTIONS_PER_IP", "some"),
        ] {
            let err = from(&[(name, value)]).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
        let err = from(&[("DATABASE_POOLER", "transaction")]).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_DIRECT_URL"), "{err}");
    }
}
