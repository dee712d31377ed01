//! CORS (`PORTCULLIS_CORS_ORIGINS`): browsers on an allowed origin may call the API with
//! bearer tokens, and an origin the list names may send credentials (the session cookies
//! of `cookies.rs`). Preflights (`OPTIONS` with `Access-Control-Request-Method`) answer
//! 204 with the route's methods and the headers a client may send; other answers to an
//! allowed origin carry `Access-Control-Allow-Origin` with that origin, never `*`.
//! A `*` in the list allows any origin, but without credentials. Nothing is allowed
//! when the list is empty.

use super::cookies::{CSRF_HEADER, SESSION_HEADER};
use super::{Request, Response, header};
use crate::settings::Settings;

/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// An origin the settings allow.
struct Allowed<'r> {
    origin: &'r str,
    /// Named in the list (not only matched by `*`): it may send credentials.
    with_credentials: bool,
}

/// The request's origin when the settings allow it.
fn allowed_origin<'r>(settings: &Settings, request: &'r Request) -> Option<Allowed<'r>> {
    let origin = request.header(header::ORIGIN)?.trim();
    let listed = |candidate: &String| candidate.eq_ignore_ascii_case(origin);
    if settings.cors_origins.iter().any(listed) {
        return Some(Allowed {
            origin,
            with_credentials: true,
        });
    }
    let any = settings
        .cors_origins
        .iter()
        .any(|candidate| candidate == "*");
    any.then_some(Allowed {
        origin,
        with_credentials: false,
    })
}

/// Adds `Access-Control-Allow-Credentials` for an origin the list names.
fn with_credentials(response: Response, allowed: &Allowed<'_>) -> Response {
    if allowed.with_credentials {
        response.with_header("access-control-allow-credentials", "true")
    } else {
        response
    }
}

/// The answer to an `OPTIONS` request on a known route.
pub fn preflight(settings: &Settings, request: &Request, methods: &str) -> Response {
    let response = Response::empty(204).with_header("allow", format!("{methods}, OPTIONS"));
    let is_preflight = request.header(header::PREFLIGHT_METHOD).is_some();
    match allowed_origin(settings, request) {
        // `allow` adds the origin and the credentials, as to every answer.
        Some(_) if is_preflight => response
            .with_header("access-control-allow-methods", methods)
            .with_header(
                "access-control-allow-headers",
                format!("authorization, content-type, {CSRF_HEADER}, {SESSION_HEADER}"),
            )
            .with_header("access-control-max-age", PREFLIGHT_MAX_AGE),
        _ => response,
    }
}

/// Adds the CORS headers to an answer for an allowed origin.
pub fn allow(settings: &Settings, request: &Request, response: Response) -> Response {
    let response = if settings.cors_origins.is_empty() {
        response
    } else {
        response.with_header("vary", "origin")
    };
    match allowed_origin(settings, request) {
        Some(allowed) => {
            let response = response
                .with_header("access-control-allow-origin", allowed.origin)
                .with_header(
                    "access-control-expose-headers",
                    "www-authenticate, retry-after",
                );
            with_credentials(response, &allowed)
        }
        None => response,
    }
}
