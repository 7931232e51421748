//! How both APIs write what they share: instants, the OpenAPI schemas of the domain's ids,
//! and the error answers many routes describe alike.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// RFC 3339 in UTC with millisecond precision: what browsers' `Date` parses exactly.
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `rfc3339`, or `null`.
pub fn optional_rfc3339<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// The schemas of the domain's ids and of a movie, as the OpenAPI document shows them: the
/// domain knows nothing of the document.
mod schemas {
    use std::borrow::Cow;

    use serde_json::json;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::{PartialSchema, ToSchema};

    use crate::domain::{BookingReference, Movie, SeatId, SessionId, UserId};

    /// A string schema with its description, and an example and a pattern if any.
    #[allow(deprecated)] // `example`, as the derived schemas write it
    fn string(description: &str, example: Option<&str>, pattern: Option<&str>) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .example(example.map(|e| json!(e)))
            .pattern(pattern)
    }

    macro_rules! named {
        ($type:ty, $name:literal, $schema:expr) => {
            impl PartialSchema for $type {
                fn schema() -> RefOr<Schema> {
                    $schema.into()
                }
            }
            impl ToSchema for $type {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed($name)
                }
            }
        };
    }

    named!(
        SeatId,
        "SeatId",
        string(
            "A seat id: a row letter `A`\u{2013}`Z` and a seat number `1`\u{2013}`99` without a leading zero.\n\nOrdering is plain string order (`A10` before `A2`), the same byte order PostgreSQL uses\nunder `collate \"C\"`: every multi-seat statement locks rows in this order.",
            Some("C7"),
            Some("^[A-Z][1-9][0-9]?$"),
        )
    );

    named!(
        UserId,
        "UserId",
        string(
            "Who holds seats: a user of the seed routes, who names themselves (1\u{2013}64 characters of\nASCII letters, digits, `-` and `_`), or an API user, whose id the server issued\n(`UserId::issue`) and who proves it with a token. An API id contains a `.`, which the seed\nformat forbids, so no seed request can name an API user or spend their hold limit.",
            Some("v1.0123456789abcdef0123456789abcdef"),
            None,
        )
    );

    named!(
        BookingReference,
        "BookingReference",
        string(
            "A confirmed booking's reference, for people to read out: `K7Q-4M2`, six characters of an\nalphabet without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B). PostgreSQL makes its own\nwith the same alphabet (migrations/0008); the column is unique.",
            Some("K7Q-4M2"),
            Some(BookingReference::PATTERN),
        )
    );

    named!(
        SessionId,
        "SessionId",
        string("A hold session id (a UUID).", None, None)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
    );

    named!(Movie, "Movie", {
        let integer = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        };
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A screening room. Seats are `A1` \u{2026} up to row `rows` and number `seats_per_row`."))
            .property("id", text())
            .required("id")
            .property("title", text())
            .required("title")
            .property("rows", integer())
            .required("rows")
            .property("seats_per_row", integer())
            .required("seats_per_row")
    });
}

/// The error answers many routes share, each described once: a route lists them as
/// `(status = 503, response = inline(Unavailable))`, so the document says the same of every
/// route, and each carries the one error body the server sends (`ErrorBody`).
pub mod responses {
    use crate::http::error::ErrorBody;

    macro_rules! shared {
        ($name:ident, $description:literal) => {
            #[doc = $description]
            #[derive(utoipa::ToResponse)]
            #[response(description = $description)]
            #[allow(dead_code)] // only ever described
            pub struct $name(ErrorBody);
        };
    }

    shared!(
        Unavailable,
        "`service_unavailable`, `overloaded`, `timeout`; for a change also `outcome_unknown` (it may have taken effect). With `Retry-After`."
    );
    shared!(
        StreamsUnavailable,
        "`too_many_streams` (poll the seat map instead), `service_unavailable`, `timeout`. With `Retry-After`."
    );
    shared!(
        InvalidToken,
        "`invalid_token`: no bearer token, or not one of ours"
    );
    shared!(
        InvalidTarget,
        "`invalid_target`: a control character in the path or query"
    );
    shared!(
        UnsupportedBody,
        "`unsupported_media_type`: not JSON; `unsupported_content_encoding`: a `Content-Encoding` other than `identity` (with `Accept-Encoding: identity`)"
    );
    shared!(BodyTooLarge, "`body_too_large`");
    shared!(MovieNotFound, "`movie_not_found`");
}
