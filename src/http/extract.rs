//! What every route reads of a request the same way: a JSON object body, whose every
//! rejection answers as an `AppError`, and a bearer token.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::AppError;

/// The token of `Authorization: Bearer <token>`: the scheme in any case and one or more
/// spaces before the token (RFC 9110, 11.4), whitespace around it not part of it; `None`
/// for a missing header, another scheme, or no token. The API's identities and the reports'
/// token are both read here.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON object request body, deserialized. Refused, before anything reads it: a content
/// coding other than `identity` (415 `unsupported_content_encoding`: the server decodes none,
/// and reading a gzip body as JSON would act on bytes the client never meant) and a content
/// type other than JSON (415); then a body too large (413) or too slow (408), invalid JSON
/// (400), and valid JSON that is not an object (422: serde's derived structs would take a
/// sequence such as `["alice"]` field by field).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if !identity_coding(request.headers()) {
            return Err(AppError::UnsupportedContentEncoding);
        }
        if !json_content_type(request.headers()) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await?;
        if !starts_an_object(&bytes) {
            return Err(match serde_json::from_slice::<IgnoredAny>(&bytes) {
                Ok(_) => AppError::InvalidBody("the body must be a JSON object".into()),
                Err(error) => AppError::MalformedJson(format!("the body is not JSON: {error}")),
            });
        }
        let axum::Json(value) = axum::Json::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// Whether every `Content-Encoding` the request names is `identity` (or it names none).
fn identity_coding(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|codings| {
                codings
                    .split(',')
                    .map(str::trim)
                    .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
            })
        })
}

/// `application/json`, or any `application/…+json`, with or without parameters: what
/// `axum::Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .is_some_and(|mime| {
            mime.type_() == mime::APPLICATION
                && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
        })
}

/// Whether the first byte that is not JSON whitespace opens an object.
fn starts_an_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // only parsed
    struct Named {
        name: String,
    }

    async fn extract(
        content_encoding: Option<&str>,
        body: &str,
    ) -> Result<(), (StatusCode, String)> {
        let mut request = Request::post("/").header(header::CONTENT_TYPE, "application/json");
        if let Some(coding) = content_encoding {
            request = request.header(header::CONTENT_ENCODING, coding);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        match Json::<Named>::from_request(request, &()).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let (status, body) = error.json();
                Err((status, body["code"].as_str().unwrap().to_owned()))
            }
        }
    }

    fn refused(status: u16, code: &str) -> Result<(), (StatusCode, String)> {
        Err((StatusCode::from_u16(status).unwrap(), code.to_owned()))
    }

    #[tokio::test]
    async fn valid_json_that_is_not_an_object_is_422_and_invalid_json_400() {
        assert_eq!(extract(None, r#" {"name": "alice"}"#).await, Ok(()));
        for body in [r#"["alice"]"#, "[]", r#""alice""#, "1", "null", "true"] {
            assert_eq!(
                extract(None, body).await,
                refused(422, "invalid_body"),
                "{body}"
            );
        }
        for body in ["[", r#"["alice""#, "", "nul", r#"{"name": "alice""#, "[] x"] {
            assert_eq!(
                extract(None, body).await,
                refused(400, "malformed_json"),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn a_content_coding_other_than_identity_is_415() {
        let body = r#"{"name": "alice"}"#;
        assert_eq!(extract(Some("identity"), body).await, Ok(()));
        assert_eq!(extract(Some("Identity"), body).await, Ok(()));
        for coding in ["gzip", "br", "deflate", "identity, gzip", "x-unknown", ""] {
            let expected = if coding.is_empty() {
                Ok(())
            } else {
                refused(415, "unsupported_content_encoding")
            };
            assert_eq!(extract(Some(coding), body).await, expected, "{coding:?}");
        }
    }
}
