//! `GET /reports/{name}`: a report as JSON, for a bearer of `REPORTS_TOKEN`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::http::error::ErrorBody;
use crate::http::extract::bearer_token;
use crate::http::wire::responses::Unavailable;
use crate::http::{AppError, AppState};
use crate::reports::Report;
use crate::store::Store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    movie: Option<String>,
}

/// The token is checked before anything else, so a caller without it learns nothing, not
/// even which reports exist.
#[utoipa::path(get, path = "/reports/{name}", tag = "reports",
    summary = "A report's rows (PostgreSQL store, with REPORTS_TOKEN)",
    params(("name" = String, Path, pattern = "^[a-z-]+$", description = "occupancy, sales-daily, hold-funnel, seat-popularity, ledger or bookings"),
           ("movie" = Option<String>, Query, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "Only this movie's rows")),
    security(("reports" = [])),
    responses(
        (status = 200, body = Vec<Object>),
        (status = 400, description = "`invalid_query`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`report_not_found`; `not_found` while REPORTS_TOKEN is unset", body = ErrorBody),
        (status = 501, description = "`reports_need_postgres`", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn report<S: Store>(
    State(app): State<AppState<S>>,
    Path(name): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<axum::Json<Vec<Map<String, Value>>>, AppError> {
    let expected = app
        .reports_token
        .as_deref()
        .ok_or(AppError::RouteNotFound)?;
    if !bearer_matches(&headers, expected) {
        return Err(AppError::Unauthorized);
    }
    let Query(query) = query.map_err(|e| AppError::InvalidQuery(e.body_text()))?;
    let report = Report::parse(&name).ok_or(AppError::ReportNotFound)?;
    let reports = app
        .reports
        .as_deref()
        .ok_or(AppError::ReportsNeedPostgres)?;
    let rows = reports.report(report, query.movie.as_deref()).await?;
    Ok(axum::Json(rows.rows))
}

/// Whether the request's bearer token is `expected`, compared in constant time (only the
/// length can show).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    bearer_token(headers).is_some_and(|token| token.as_bytes().ct_eq(expected.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    fn with(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let token = "0123456789abcdef";
        assert!(bearer_matches(&with("Bearer 0123456789abcdef"), token));
        assert!(bearer_matches(&with("bearer 0123456789abcdef"), token));
        // The scheme in any case, then one or more spaces; whitespace around the token is
        // not part of it.
        assert!(bearer_matches(&with("BEARER  0123456789abcdef"), token));
        assert!(bearer_matches(&with("Bearer 0123456789abcdef "), token));
        assert!(!bearer_matches(&HeaderMap::new(), token));
        for wrong in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Bearer 0123456789 abcdef",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
            "Bearer",
        ] {
            assert!(!bearer_matches(&with(wrong), token), "{wrong}");
        }
    }
}
