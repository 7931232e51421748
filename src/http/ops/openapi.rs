//! `GET /openapi.json`: the OpenAPI 3.1 document of every route served. It is made from the
//! routes as they are registered (`utoipa-axum`'s `OpenApiRouter`), so it cannot drift from
//! them, and `clippy.toml` forbids registering a route any other way.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::AppState;
use crate::http::error::{ErrorBody, Suggestion};
use crate::store::Store;

/// What the document says besides its routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "boxoffice",
        description = "Cinema seat booking: hold seats, then confirm or release them; an \
                       untouched hold expires. Every error is JSON: `{\"error\", \"code\"}`."
    ),
    modifiers(&Schemes),
    components(schemas(ErrorBody, Suggestion)),
    tags(
        (name = "v1", description = "The API: identities with bearer tokens, group and \
                                     best-available holds, idempotent writes."),
        (name = "seed", description = "The tutorial's routes, kept as they were: whoever \
                                       names a user_id is that user (SEED_API)."),
        (name = "reports", description = "Reports for the cinema's staff."),
        (name = "operations", description = "Health, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// The bearer schemes: API tokens, and the reports token.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(description.to_owned());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme("bearer", bearer("The token of POST /api/v1/identities."));
        components.add_security_scheme("reports", bearer("REPORTS_TOKEN."));
    }
}

/// What the derive cannot say: `HoldRequest` needs exactly one of its two fields
/// (`minProperties: 1`; utoipa-gen 5.5 writes `min_properties` as `maxProperties`).
pub fn finish(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    let schemas = openapi.components.as_mut().map(|c| &mut c.schemas);
    if let Some(RefOr::T(Schema::Object(hold))) =
        schemas.and_then(|schemas| schemas.get_mut("HoldRequest"))
    {
        hold.min_properties = Some(1);
    }
}

/// The document, rendered once when the router is built.
#[derive(Clone)]
pub struct Document(pub Bytes);

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    summary = "This document",
    responses((status = 200, body = Object)))]
pub async fn document<S: Store>(State(app): State<AppState<S>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.0.clone(),
    )
}
