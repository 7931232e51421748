//! `AppError`: every error the HTTP layer answers, as `{"error", "code"}` JSON.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::booking::Refusal;
use crate::domain::{ScreeningIdError, SeatId, SeatIdError, SessionIdError, UserIdError};
use crate::reports::Report;
use crate::store::{StoreError, Unavailable};

/// Every error answer: a message for people and a stable code for programs, with details
/// for some codes. Described here for the OpenAPI document; `AppError::json` writes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only ever described, never built
pub struct ErrorBody {
    /// For people, such as "seat A1 is already taken".
    error: String,
    /// For programs: stable, snake_case, such as `seat_taken`.
    #[schema(pattern = "^[a-z_]+$")]
    code: String,
    /// `seat_taken`: the seats someone else has, in seat order.
    seats: Option<Vec<SeatId>>,
    /// `seat_taken` on /api/v1: a block of the same size to hold instead, or null.
    suggestion: Option<Suggestion>,
    /// `not_enough_seats`: how many are free.
    free: Option<usize>,
}

/// A counter-offer: not held; hold it with a new request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only ever described, never built
pub struct Suggestion {
    seat_ids: Vec<SeatId>,
}

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, Clone)]
pub enum AppError {
    MalformedJson(String),
    InvalidQuery(String),
    InvalidBody(String),
    UnsupportedMediaType,
    /// A body in a content coding (`gzip`, …): the server decodes none.
    UnsupportedContentEncoding,
    BodyTooLarge,
    InvalidUserId,
    InvalidSeatId,
    InvalidSessionId,
    /// A request target no route could mean: no leading slash, or a control character.
    InvalidTarget,
    /// A header that must come once came more than once.
    DuplicateHeader(&'static str),
    /// The body did not arrive within the time allowed for it.
    BodyTimeout,
    DuplicateSeat(SeatId),
    MovieNotFound,
    SeatNotFound,
    SessionNotFound,
    RouteNotFound,
    MethodNotAllowed,
    SeatTaken(Vec<SeatId>),
    /// An API hold lost some of its seats: which, and a block of the same size to try instead.
    SeatsTaken {
        seats: Vec<SeatId>,
        suggestion: Option<Vec<SeatId>>,
    },
    NotEnoughSeats {
        free: usize,
    },
    TooManySeats {
        max: usize,
    },
    ExtensionLimit,
    KeyInFlight,
    KeyReused,
    /// The caller keeps as many idempotency keys as it may.
    TooManyKeys {
        limit: u64,
    },
    InvalidIdempotencyKey,
    /// An API request without a valid bearer token.
    InvalidToken,
    AlreadyConfirmed,
    HoldExpired,
    HoldReleased,
    HoldLimit {
        limit: u32,
    },
    /// The client's address holds as many seats as one address may.
    AddressHoldLimit {
        limit: u32,
    },
    /// The caller held one of the seats for as long as a hold may last, letting it go and
    /// taking it again included; they may hold it again in `retry_after` seconds.
    HeldTooLong {
        retry_after: u64,
    },
    /// Past a client's rate limit (`limits`); nothing was done.
    RateLimited {
        retry_after: u64,
    },
    Unavailable,
    /// Too many requests are waiting; nothing was done.
    Overloaded,
    /// Ran out of time; nothing was done.
    Timeout,
    /// A change ran out of time or lost contact while under way: it may have taken effect.
    OutcomeUnknown,
    /// The process has as many event streams open as it allows.
    TooManyStreams,
    /// The client's address has as many connections open as it may.
    TooManyConnections,
    Unauthorized,
    ReportNotFound,
    ReportsNeedPostgres,
    Internal,
    /// A framework response with no body of ours; keeps its status.
    Other(StatusCode),
}

/// An answer's status, code and message.
type Parts = (StatusCode, &'static str, String);

impl AppError {
    /// Its status, code and message, by the kind of error it is.
    fn parts(&self) -> Parts {
        use AppError::*;
        match self {
            MalformedJson(..)
            | InvalidQuery(..)
            | InvalidBody(..)
            | UnsupportedMediaType
            | UnsupportedContentEncoding
            | BodyTooLarge
            | InvalidUserId
            | InvalidSeatId
            | InvalidSessionId
            | DuplicateSeat(..)
            | InvalidTarget
            | DuplicateHeader(..)
            | BodyTimeout
            | TooManySeats { .. }
            | KeyReused
            | InvalidIdempotencyKey => self.request_parts(),
            MovieNotFound | SeatNotFound | SessionNotFound | RouteNotFound | MethodNotAllowed
            | ReportNotFound | InvalidToken | Unauthorized => self.lookup_parts(),
            SeatTaken(..)
            | SeatsTaken { .. }
            | NotEnoughSeats { .. }
            | ExtensionLimit
            | KeyInFlight
            | AlreadyConfirmed
            | HoldExpired
            | HoldReleased
            | HeldTooLong { .. } => self.seats_parts(),
            TooManyKeys { .. }
            | HoldLimit { .. }
            | AddressHoldLimit { .. }
            | RateLimited { .. }
            | TooManyStreams
            | TooManyConnections => self.limit_parts(),
            Unavailable | Overloaded | Timeout | OutcomeUnknown | ReportsNeedPostgres
            | Internal | Other(..) => self.server_parts(),
        }
    }

    /// The request itself is wrong: its target, headers, body or fields.
    fn request_parts(&self) -> Parts {
        use AppError::*;
        use StatusCode as S;
        match self {
            MalformedJson(detail) => (S::BAD_REQUEST, "malformed_json", detail.clone()),
            InvalidQuery(detail) => (S::BAD_REQUEST, "invalid_query", detail.clone()),
            InvalidBody(detail) => (S::UNPROCESSABLE_ENTITY, "invalid_body", detail.clone()),
            UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json".into(),
            ),
            UnsupportedContentEncoding => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                "the body must be sent as is, without a Content-Encoding such as gzip".into(),
            ),
            BodyTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large".into(),
            ),
            InvalidUserId => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_user_id",
                UserIdError.to_string(),
            ),
            InvalidSeatId => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_seat_id",
                SeatIdError::Malformed.to_string(),
            ),
            InvalidSessionId => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_session_id",
                SessionIdError.to_string(),
            ),
            DuplicateSeat(seat) => (
                S::UNPROCESSABLE_ENTITY,
                "duplicate_seat",
                format!("seat {seat} is listed more than once"),
            ),
            InvalidTarget => (
                S::BAD_REQUEST,
                "invalid_target",
                "the request target must be a path starting with / and free of control \
                 characters, decoded or not"
                    .into(),
            ),
            DuplicateHeader(name) => (
                S::BAD_REQUEST,
                "duplicate_header",
                format!("the {name} header must be sent once"),
            ),
            BodyTimeout => (
                S::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time".into(),
            ),
            TooManySeats { max } => (
                S::UNPROCESSABLE_ENTITY,
                "too_many_seats",
                format!("one hold may have 1 to {max} seats"),
            ),
            KeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request".into(),
            ),
            InvalidIdempotencyKey => (
                S::BAD_REQUEST,
                "invalid_idempotency_key",
                format!(
                    "an Idempotency-Key is 1 to {} visible ASCII characters",
                    crate::domain::IdempotencyKey::MAX_LEN
                ),
            ),
            _ => unreachable!("not of this kind: {self:?}"),
        }
    }

    /// What the request names or proves is not there: an id, a route, a token.
    fn lookup_parts(&self) -> Parts {
        use AppError::*;
        use StatusCode as S;
        match self {
            MovieNotFound => (S::NOT_FOUND, "movie_not_found", "no such movie".into()),
            SeatNotFound => (
                S::NOT_FOUND,
                "seat_not_found",
                "no such seat in this room".into(),
            ),
            SessionNotFound => (S::NOT_FOUND, "session_not_found", "no such hold".into()),
            RouteNotFound => (S::NOT_FOUND, "not_found", "no such page or endpoint".into()),
            MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method".into(),
            ),
            ReportNotFound => (
                S::NOT_FOUND,
                "report_not_found",
                format!(
                    "no such report; there are: {}",
                    Report::ALL.map(Report::name).join(", ")
                ),
            ),
            InvalidToken => (
                S::UNAUTHORIZED,
                "invalid_token",
                "send the token of POST /api/v1/identities as Authorization: Bearer <token>".into(),
            ),
            Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "send the reports token as Authorization: Bearer <token>".into(),
            ),
            _ => unreachable!("not of this kind: {self:?}"),
        }
    }

    /// The seats or the session are not in a state that allows it.
    fn seats_parts(&self) -> Parts {
        use AppError::*;
        use StatusCode as S;
        match self {
            SeatTaken(seats) => {
                let list: Vec<&str> = seats.iter().map(SeatId::as_str).collect();
                let message = match list.as_slice() {
                    [one] => format!("seat {one} is already taken"),
                    many => format!("seats {} are already taken", many.join(", ")),
                };
                (S::CONFLICT, "seat_taken", message)
            }
            SeatsTaken { seats, .. } => AppError::SeatTaken(seats.clone()).parts(),
            NotEnoughSeats { free } => (
                S::CONFLICT,
                "not_enough_seats",
                format!("only {free} seats are free"),
            ),
            ExtensionLimit => (
                S::CONFLICT,
                "extension_limit",
                "this hold cannot be extended any further".into(),
            ),
            KeyInFlight => (
                S::CONFLICT,
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being carried out: retry shortly"
                    .into(),
            ),
            AlreadyConfirmed => (
                S::CONFLICT,
                "already_confirmed",
                "this booking is confirmed and can no longer be released".into(),
            ),
            HoldExpired => (S::GONE, "hold_expired", "this hold has expired".into()),
            HoldReleased => (S::GONE, "hold_released", "this hold was released".into()),
            HeldTooLong { retry_after } => (
                S::CONFLICT,
                "held_too_long",
                format!(
                    "you have held one of these seats for as long as a hold may last, letting \
                     it go and taking it again included: you can hold it again in \
                     {retry_after} s"
                ),
            ),
            _ => unreachable!("not of this kind: {self:?}"),
        }
    }

    /// The caller has used up an allowance.
    fn limit_parts(&self) -> Parts {
        use AppError::*;
        use StatusCode as S;
        match self {
            TooManyKeys { limit } => (
                S::TOO_MANY_REQUESTS,
                "idempotency_key_limit",
                format!(
                    "you have used {limit} idempotency keys in the last 24 hours: send this \
                     request without one, or later"
                ),
            ),
            HoldLimit { limit } => (
                S::TOO_MANY_REQUESTS,
                "hold_limit",
                format!("you can hold at most {limit} seats at once"),
            ),
            AddressHoldLimit { limit } => (
                S::TOO_MANY_REQUESTS,
                "address_hold_limit",
                format!(
                    "the people at your address hold {limit} seats, the most one address may \
                     hold at once: confirm or release some first"
                ),
            ),
            RateLimited { retry_after } => (
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many holds or sign-ups from you: try again in {retry_after} s"),
            ),
            TooManyStreams => (
                S::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "too many live update streams are open: poll the seat map instead".into(),
            ),
            TooManyConnections => (
                S::SERVICE_UNAVAILABLE,
                "too_many_connections",
                "too many connections are open from your address: close one and retry".into(),
            ),
            _ => unreachable!("not of this kind: {self:?}"),
        }
    }

    /// The server could not serve it now, or failed.
    fn server_parts(&self) -> Parts {
        use AppError::*;
        use StatusCode as S;
        match self {
            Unavailable => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the booking service is temporarily unavailable, please retry".into(),
            ),
            Overloaded => (
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests are waiting, please retry".into(),
            ),
            Timeout => (
                S::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long, please retry".into(),
            ),
            OutcomeUnknown => (
                S::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                "the request may or may not have taken effect: check before retrying".into(),
            ),
            ReportsNeedPostgres => (
                S::NOT_IMPLEMENTED,
                "reports_need_postgres",
                "reports need the PostgreSQL store: this server runs without DATABASE_URL".into(),
            ),
            Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                "something went wrong on our side".into(),
            ),
            Other(status) => (
                *status,
                other_code(*status),
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_string(),
            ),

            _ => unreachable!("not of this kind: {self:?}"),
        }
    }
}

/// Stable codes for statuses that only the framework produces.
fn other_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 | 503 | 504 => "timeout",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        s if s >= 500 => "internal_error",
        _ => "request_error",
    }
}

impl AppError {
    /// The status and JSON body this error answers with.
    pub fn json(&self) -> (StatusCode, serde_json::Value) {
        let (status, code, message) = self.parts();
        let mut body = json!({ "error": message, "code": code });
        match &self {
            AppError::SeatTaken(seats) => body["seats"] = json!(seats),
            AppError::SeatsTaken { seats, suggestion } => {
                body["seats"] = json!(seats);
                body["suggestion"] = json!(suggestion.as_ref().map(|s| json!({ "seat_ids": s })));
            }
            AppError::NotEnoughSeats { free } => body["free"] = json!(free),
            _ => {}
        }
        (status, body)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = self.json();
        let mut response = (status, axum::Json(body)).into_response();
        let realm = match &self {
            AppError::Unauthorized => Some("Bearer realm=\"reports\""),
            AppError::InvalidToken => Some("Bearer realm=\"api\""),
            _ => None,
        };
        if let Some(realm) = realm {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(realm));
        }
        if let AppError::UnsupportedContentEncoding = self {
            // RFC 9110, 12.5.3: the codings the server takes in a request.
            response.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if let AppError::RateLimited { retry_after } | AppError::HeldTooLong { retry_after } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || matches!(self, AppError::KeyInFlight) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        AppError::from(StoreError::Refused(refusal))
    }
}

/// An id no screening can have names none: 404, as an unknown one.
impl From<ScreeningIdError> for AppError {
    fn from(_: ScreeningIdError) -> Self {
        Self::MovieNotFound
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::MovieNotFound => Self::MovieNotFound,
            StoreError::SessionNotFound => Self::SessionNotFound,
            StoreError::SeatTaken(seats) => Self::SeatTaken(seats),
            StoreError::DuplicateSeat(seat) => Self::DuplicateSeat(seat),
            StoreError::NoSeats => Self::InvalidSeatId,
            StoreError::Expired => Self::HoldExpired,
            StoreError::Released => Self::HoldReleased,
            StoreError::AlreadyConfirmed => Self::AlreadyConfirmed,
            StoreError::LimitReached { limit } => Self::HoldLimit { limit },
            StoreError::AddressLimitReached { limit } => Self::AddressHoldLimit { limit },
            StoreError::HeldTooLong { retry_at } => Self::HeldTooLong {
                retry_after: u64::try_from((retry_at - chrono::Utc::now()).num_seconds())
                    .unwrap_or(0)
                    .max(1),
            },
            StoreError::NotEnoughSeats { free } => Self::NotEnoughSeats { free },
            StoreError::ExtensionLimit => Self::ExtensionLimit,
            StoreError::KeyInFlight => Self::KeyInFlight,
            StoreError::KeyReused => Self::KeyReused,
            StoreError::Refused(Refusal::RateLimited { retry_after }) => {
                Self::RateLimited { retry_after }
            }
            StoreError::Refused(Refusal::TooManyKeys { limit }) => Self::TooManyKeys { limit },
            // Logged where it happened, once for all the requests it answers.
            StoreError::Unavailable(Unavailable::QueueFull) => Self::Overloaded,
            StoreError::Unavailable(Unavailable::NotStarted) => Self::Timeout,
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::OutcomeUnknown => Self::OutcomeUnknown,
            StoreError::ReportsNeedPostgres => Self::ReportsNeedPostgres,
            error @ (StoreError::NoReportViews | StoreError::InvalidTimeZone(_)) => {
                tracing::error!(%error, "reports are misconfigured");
                Self::Internal
            }
            StoreError::Database(source) => {
                tracing::error!(error = &source as &dyn std::error::Error, "database error");
                Self::Internal
            }
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::InvalidBody(rejection.body_text()),
            StatusCode::BAD_REQUEST => Self::MalformedJson(rejection.body_text()),
            _ => Self::body_not_read(&rejection, rejection.status()),
        }
    }
}

impl From<BytesRejection> for AppError {
    fn from(rejection: BytesRejection) -> Self {
        Self::body_not_read(&rejection, rejection.status())
    }
}

impl AppError {
    /// A body that could not be read: too large, too slow, or cut off.
    fn body_not_read(rejection: &(dyn std::error::Error + 'static), status: StatusCode) -> Self {
        if caused_by::<tower_http::timeout::TimeoutError>(rejection) {
            return Self::BodyTimeout;
        }
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::BodyTooLarge,
            status => Self::Other(status),
        }
    }
}

impl From<UserIdError> for AppError {
    fn from(_: UserIdError) -> Self {
        Self::InvalidUserId
    }
}

impl From<SeatIdError> for AppError {
    fn from(error: SeatIdError) -> Self {
        match error {
            SeatIdError::Malformed => Self::InvalidSeatId,
            SeatIdError::OutsideGrid => Self::SeatNotFound,
        }
    }
}

impl From<SessionIdError> for AppError {
    fn from(_: SessionIdError) -> Self {
        Self::InvalidSessionId
    }
}

/// Whether `error` or one of its causes is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store error as the client gets it: status, code and `Retry-After`.
    fn answer(error: StoreError) -> (StatusCode, &'static str, Option<String>) {
        let error = AppError::from(error);
        let (status, code, _) = error.parts();
        let response = error.into_response();
        let retry = response.headers().get(header::RETRY_AFTER);
        (status, code, retry.map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn transient_store_errors_answer_503_with_what_happened_and_retry_after() {
        let retry = Some("1".to_owned());
        for (error, code) in [
            (
                StoreError::Unavailable(Unavailable::QueueFull),
                "overloaded",
            ),
            (StoreError::Unavailable(Unavailable::NotStarted), "timeout"),
            (
                StoreError::Unavailable(Unavailable::Unreachable),
                "service_unavailable",
            ),
            (
                StoreError::Unavailable(Unavailable::WorkersDown),
                "service_unavailable",
            ),
            (StoreError::OutcomeUnknown, "outcome_unknown"),
        ] {
            assert_eq!(
                answer(error),
                (StatusCode::SERVICE_UNAVAILABLE, code, retry.clone()),
                "{code}"
            );
        }
    }
}
