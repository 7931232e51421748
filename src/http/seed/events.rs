//! `GET /movies/{movie_id}/events`: a movie's seat map, live.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::http::events::{self, SseEvent};
use crate::http::limits::ClientIp;
use crate::http::wire::responses::{InvalidTarget, MovieNotFound, StreamsUnavailable};
use crate::http::{AppError, AppState};
use crate::store::Store;

#[utoipa::path(get, path = "/movies/{movie_id}/events", tag = "seed",
    summary = "The seat map, live, as server-sent events",
    description = "Opens with a `snapshot` event (taken seats and a version), then one event per change: `held`, `confirmed`, `released`, `expired`, `extended`, each with `seat_ids` and, for `held` and `extended`, `expires_at`; `resync` asks to read the map afresh. Resumes with `Last-Event-ID`. Names no user.",
    params(("movie_id" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "The movie's slug, such as `inception`")),
    responses(
        (status = 400, response = inline(InvalidTarget)),
        (status = 200, content_type = "text/event-stream", body = SseEvent, description = "One object per event: `snapshot` first, then `held`, `confirmed`, `released`, `expired`, `extended` or `resync`"),
        (status = 404, response = inline(MovieNotFound)),
        (status = 503, response = inline(StreamsUnavailable)),
    ))]
pub async fn stream<S: Store>(
    State(app): State<AppState<S>>,
    client: ClientIp,
    Path(movie_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    events::open(app, client, &movie_id, &headers).await
}
