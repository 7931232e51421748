//! The Content-Security-Policy of the pages in `STATIC_DIR`: ours runs no inline code and gets
//! the strict policy; a page that is not ours, such as the tutorial's with its inline
//! `<script>` and `<style>`, gets those blocks allowed by their SHA-256, never
//! `'unsafe-inline'`.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::AppError;

/// Largest HTML page whose inline blocks are hashed.
const MAX_PAGE_BYTES: usize = 16 << 20;

/// The policy for a page whose inline scripts and styles have these hashes (each already
/// `'sha256-…'`): everything else from this server only, no plugins, no framing.
pub fn policy(scripts: &[String], styles: &[String]) -> String {
    let sources = |hashes: &[String]| {
        std::iter::once("'self'")
            .chain(hashes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "default-src 'self'; script-src {}; style-src {}; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
        sources(scripts),
        sources(styles)
    )
}

/// Wraps the static files: an HTML page is sent with the policy its own inline blocks need,
/// computed from the file as it is read. Every other response gets the strict policy further
/// out.
pub async fn inline_policy(mut request: Request, next: Next) -> Response {
    if serves_a_page(request.uri().path()) {
        // A 304 or a part of a page would carry a policy computed without the page (a cache
        // takes the headers of a 304 for the page it keeps): pages are always sent whole.
        let headers = request.headers_mut();
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::RANGE,
            header::IF_RANGE,
        ] {
            headers.remove(name);
        }
    }
    let response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if response.status() != StatusCode::OK || !html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(page) = to_bytes(body, MAX_PAGE_BYTES).await else {
        tracing::error!("a page in STATIC_DIR could not be read whole to hash its inline blocks");
        return AppError::Internal.into_response();
    };
    let blocks = InlineBlocks::of(&String::from_utf8_lossy(&page));
    let policy = policy(&blocks.scripts, &blocks.styles);
    parts.headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::try_from(policy).expect("hashes are base64"),
    );
    Response::from_parts(parts, Body::from(page))
}

/// Whether the static files answer `path` with an HTML page: a folder's `index.html`, or a
/// file named `.html` or `.htm` (the content type is guessed from the name).
fn serves_a_page(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    path.ends_with('/') || path.ends_with(".html") || path.ends_with(".htm")
}

/// The `'sha256-…'` sources of a page's inline scripts and styles.
#[derive(Debug, Default, PartialEq)]
struct InlineBlocks {
    scripts: Vec<String>,
    styles: Vec<String>,
}

impl InlineBlocks {
    /// Finds every `<script>` without `src` and every `<style>` as the HTML parser does (the
    /// text up to the first closing tag, whatever it looks like inside) and hashes its text.
    fn of(html: &str) -> Self {
        let lower = html.to_ascii_lowercase();
        let mut blocks = Self::default();
        let mut at = 0;
        while let Some(found) = lower[at..].find('<') {
            let start = at + found;
            at = start + 1;
            let Some(name) = ["script", "style"].into_iter().find(|name| {
                lower[start + 1..].starts_with(name)
                    && lower[start + 1 + name.len()..]
                        .starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            }) else {
                continue;
            };
            let Some(tag_end) = tag_end(&html[start..]).map(|end| start + end) else {
                break;
            };
            let tag = &lower[start + 1 + name.len()..tag_end - 1];
            let close = format!("</{name}");
            let text_end = lower[tag_end..]
                .find(&close)
                .map_or(html.len(), |i| tag_end + i);
            let hash = format!(
                "'sha256-{}'",
                STANDARD.encode(Sha256::digest(&html.as_bytes()[tag_end..text_end]))
            );
            let hashes = match name {
                "script" if !attribute_names(tag).any(|a| a == "src") => &mut blocks.scripts,
                "style" => &mut blocks.styles,
                _ => &mut Vec::new(),
            };
            if !hashes.contains(&hash) {
                hashes.push(hash);
            }
            at = text_end;
        }
        blocks
    }
}

/// The index just past the `>` that ends the tag opening `html`, skipping quoted values.
fn tag_end(html: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in html.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The names of a tag's attributes, given the text between its name and its `>`.
fn attribute_names(tag: &str) -> impl Iterator<Item = &str> {
    let mut rest = tag;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let name_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        if let Some(value) = rest.strip_prefix('=') {
            let value = value.trim_start();
            rest = match value.chars().next() {
                Some(q @ ('"' | '\'')) => value[1..].find(q).map_or("", |i| &value[i + 2..]),
                _ => {
                    let end = value
                        .find(|c: char| c.is_ascii_whitespace())
                        .unwrap_or(value.len());
                    &value[end..]
                }
            };
        }
        Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(text: &str) -> String {
        format!(
            "'sha256-{}'",
            STANDARD.encode(Sha256::digest(text.as_bytes()))
        )
    }

    #[test]
    fn a_page_without_inline_blocks_gets_the_strict_policy() {
        let page = r#"<!doctype html><link rel="stylesheet" href="style.css">
            <script src="app.js" defer></script><p>no inline code</p>"#;
        assert_eq!(InlineBlocks::of(page), InlineBlocks::default());
        let strict = policy(&[], &[]);
        assert!(strict.contains("script-src 'self';"), "{strict}");
        assert!(strict.contains("style-src 'self';"), "{strict}");
        assert!(!strict.contains("unsafe"), "{strict}");
    }

    #[test]
    fn each_inline_script_and_style_is_allowed_by_the_hash_of_its_exact_text() {
        let page = "<HTML><head><Style media=\"all\">\n h1 { color: red }\n</STYLE>\
            <script type=\"module\" data-x='a > b'>load();</script>\
            <script src=\"/lib.js\">ignored</script>\
            <script>const s = \"<script>\";</script></head>\
            <body><stylex>not a style</stylex><script>load();</script></body>";
        let blocks = InlineBlocks::of(page);
        assert_eq!(
            blocks,
            InlineBlocks {
                scripts: vec![sha("load();"), sha("const s = \"<script>\";")],
                styles: vec![sha("\n h1 { color: red }\n")],
            }
        );
        let policy = policy(&blocks.scripts, &blocks.styles);
        assert!(
            policy.contains(&format!(
                "script-src 'self' {} {};",
                sha("load();"),
                sha("const s = \"<script>\";")
            )),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }

    #[test]
    fn an_unclosed_block_runs_to_the_end_of_the_page() {
        assert_eq!(InlineBlocks::of("<script>go()").scripts, vec![sha("go()")]);
        assert_eq!(
            InlineBlocks::of("<script src=x").scripts,
            Vec::<String>::new()
        );
    }

    #[test]
    fn attribute_names_skip_values() {
        let names: Vec<_> =
            attribute_names(r#" type="text/x src" data-src=a async src='y'"#).collect();
        assert_eq!(names, ["type", "data-src", "async", "src"]);
    }
}
