//! CORS (`PORTCULLIS_CORS_ORIGINS`): browsers on an allowed origin may call the API with
//! bearer tokens. Preflights (`OPTIONS` with `Access-Control-Request-Method`) answer
//! 204 with the route's methods; other answers to an allowed origin carry
//! `Access-Control-Allow-Origin`. Nothing is allowed when the list is empty.

use super::{Request, Response, header};
use crate::settings::Settings;

/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The request's origin when the settings allow it.
fn allowed_origin<'r>(settings: &Settings, request: &'r Request) -> Option<&'r str> {
    let origin = request.header(header::ORIGIN)?.trim();
    let allowed = settings
        .cors_origins
        .iter()
        .any(|candidate| candidate == "*" || candidate.eq_ignore_ascii_case(origin));
    allowed.then_some(origin)
}

/// The answer to an `OPTIONS` request on a known route.
pub fn preflight(settings: &Settings, request: &Request, methods: &str) -> Response {
    let response = Response::empty(204).with_header("allow", format!("{methods}, OPTIONS"));
    let is_preflight = request.header(header::PREFLIGHT_METHOD).is_some();
    match allowed_origin(settings, request) {
        Some(_) if is_preflight => response
            .with_header("access-control-allow-methods", methods)
            .with_header(
                "access-control-allow-headers",
                "authorization, content-type",
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
        Some(origin) => response
            .with_header("access-control-allow-origin", origin)
            .with_header(
                "access-control-expose-headers",
                "www-authenticate, retry-after",
            ),
        None => response,
    }
}
