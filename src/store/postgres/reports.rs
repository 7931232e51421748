//! Reading the report views, and the time zone their days are cut in. Report statements are
//! unnamed (not kept prepared): they are rare, and may run behind a transaction pooler.

use futures_util::{Stream, StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::classify;
use crate::reports::{Report, Rows};
use crate::store::{StoreError, StoreResult};

/// `report`'s rows, of one movie or all, in memory. Reads only the views, so a connection as
/// the reporting role will do. `MovieNotFound` for a movie that does not exist.
pub async fn fetch(
    conn: &mut PgConnection,
    report: Report,
    movie: Option<&str>,
) -> StoreResult<Rows> {
    let columns = columns(conn, report, movie).await?;
    let rows = rows(conn, report, movie).try_collect().await?;
    Ok(Rows { columns, rows })
}

/// The columns of `report`, in order, after checking that `movie` (if any) exists: what to
/// know before the first row.
pub async fn columns(
    conn: &mut PgConnection,
    report: Report,
    movie: Option<&str>,
) -> StoreResult<Vec<String>> {
    if let Some(movie) = movie {
        // The occupancy view lists every movie, and the reporting role may read it.
        let known: bool =
            sqlx::query_scalar("select exists (select from report_occupancy where movie_id = $1)")
                .persistent(false)
                .bind(movie)
                .fetch_one(&mut *conn)
                .await
                .map_err(missing_views)?;
        if !known {
            return Err(StoreError::MovieNotFound);
        }
    }
    sqlx::query_scalar(
        "select attname::text from pg_attribute
          where attrelid = $1::regclass and attnum > 0 and not attisdropped
          order by attnum",
    )
    .persistent(false)
    .bind(report.view())
    .fetch_all(&mut *conn)
    .await
    .map_err(missing_views)
}

/// `report`'s rows as they arrive, each an object keyed by column.
pub fn rows<'c>(
    conn: &'c mut PgConnection,
    report: Report,
    movie: Option<&'c str>,
) -> impl Stream<Item = StoreResult<Map<String, Value>>> + 'c {
    let sql = format!(
        "select row_to_json(r)::text from (
             select * from {view} where $1::text is null or movie_id = $1 order by {order}) r",
        view = report.view(),
        order = report.order(),
    );
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(movie)
        .fetch(conn)
        .map(|row| {
            let row = row.map_err(missing_views)?;
            serde_json::from_str(&row)
                .map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))
        })
}

/// A database without the views (not migrated yet) says so; anything else as usual.
fn missing_views(error: sqlx::Error) -> StoreError {
    let undefined = matches!(&error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("42P01"));
    if undefined {
        StoreError::NoReportViews
    } else {
        classify(error)
    }
}

/// Sets the time zone the views cut days in. `InvalidTimeZone` if PostgreSQL does not know it.
pub(super) async fn set_time_zone(
    conn: &mut PgConnection,
    persistent: bool,
    time_zone: &str,
) -> StoreResult<()> {
    sqlx::query("update report_settings set time_zone = $1")
        .persistent(persistent)
        .bind(time_zone)
        .execute(conn)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22023") => {
                StoreError::InvalidTimeZone(db.message().to_owned())
            }
            _ => classify(error),
        })?;
    Ok(())
}
