//! How the store's statements reach PostgreSQL: straight from the pool, or through a pooler in
//! transaction mode (PgBouncer's `pool_mode = transaction`).
//!
//! Behind such a pooler a client may be moved to another server connection between any two
//! transactions, and between the messages of one statement outside a transaction. So there,
//! every statement runs inside an explicit transaction, as an unnamed (non-persistent)
//! statement (a named one would be missing on the next server connection, or already exist),
//! and the settings a direct connection gets at start-up (`session_options`, the statement
//! timeout) are set with `SET LOCAL` in the statement that begins each transaction, which
//! sqlx sends with the transaction's first statement, in one round trip.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

#[derive(Clone)]
pub(super) struct Link {
    pub(super) pool: PgPool,
    /// Behind a transaction pooler: what begins every transaction.
    begin: Option<Arc<str>>,
    /// How long one round of statements may take here, whatever the database does: a link
    /// that went dead never answers, so the database's own deadlines cannot fire.
    pub(super) deadline: Duration,
}

/// Kept beyond the database's statement timeout for its answer to arrive.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

impl Link {
    pub(super) fn direct(pool: PgPool, statement_timeout: Duration) -> Self {
        Self {
            pool,
            begin: None,
            deadline: statement_timeout + ANSWER_MARGIN,
        }
    }

    pub(super) fn pooled(pool: PgPool, statement_timeout: Duration) -> Self {
        let mut begin = "begin; set local plan_cache_mode = force_custom_plan".to_owned();
        for (name, value) in super::timeouts(statement_timeout) {
            begin.push_str(&format!("; set local {name} = {value}"));
        }
        Self {
            pool,
            begin: Some(begin.into()),
            deadline: statement_timeout + ANSWER_MARGIN,
        }
    }

    /// Whether statements may be prepared once and kept on the connection.
    pub(super) fn persistent(&self) -> bool {
        self.begin.is_none()
    }

    /// A transaction on a pooled connection.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        match &self.begin {
            Some(begin) => {
                self.pool
                    .begin_with(sqlx::AssertSqlSafe(begin.to_string()))
                    .await
            }
            None => self.pool.begin().await,
        }
    }

    /// A transaction on `conn`, a connection with the pool's options.
    pub(super) async fn begin_on<'c>(
        &self,
        conn: &'c mut PgConnection,
    ) -> Result<Transaction<'c, Postgres>, sqlx::Error> {
        use sqlx::Connection;
        match &self.begin {
            Some(begin) => {
                conn.begin_with(sqlx::AssertSqlSafe(begin.to_string()))
                    .await
            }
            None => conn.begin().await,
        }
    }

    /// Where to run statements that need no transaction of their own: a pooled connection
    /// as it is, or, behind a pooler, a transaction. `Session::done` ends it.
    pub(super) async fn session(&self) -> Result<Session, sqlx::Error> {
        Ok(match &self.begin {
            Some(_) => Session::Pooled(self.begin().await?),
            None => Session::Direct(self.pool.acquire().await?),
        })
    }
}

pub(super) enum Session {
    Direct(PoolConnection<Postgres>),
    Pooled(Transaction<'static, Postgres>),
}

/// What a round of statements cut short by the deadline fails with: like a lost connection
/// (a read may be retried; a change may or may not have taken effect).
pub(super) fn no_answer() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer from the database in time",
    ))
}

impl Session {
    /// Runs `work` within the link's deadline. Past it, the connection (which may be waiting
    /// on a dead link mid-statement) is closed rather than put back in the pool, where its
    /// check would wait on that link as long as the kernel keeps it.
    pub(super) async fn within<T>(
        &mut self,
        link: &Link,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        match tokio::time::timeout(link.deadline, work(self)).await {
            Ok(result) => result,
            Err(_) => {
                if let Self::Direct(conn) = self {
                    conn.close_on_drop();
                }
                Err(no_answer())
            }
        }
    }

    /// Commits the transaction behind a pooler (a read's commit changes nothing, but ends the
    /// transaction, so that the pooler may lend the server connection to someone else).
    pub(super) async fn done(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Direct(_) => Ok(()),
            Self::Pooled(tx) => tx.commit().await,
        }
    }
}

impl Deref for Session {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Self::Direct(conn) => conn,
            Self::Pooled(tx) => tx,
        }
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Self::Direct(conn) => conn,
            Self::Pooled(tx) => tx,
        }
    }
}
