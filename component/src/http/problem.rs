//! Errors as RFC 9457 `application/problem+json` answers, with the headers API.md §2
//! asks for (`WWW-Authenticate` on 401, `Retry-After` on 429 and 503, `Allow` on 405).

use super::Response;
use super::model::Problem;
use crate::error::Error;

/// The media type of problem answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// When a client should try again after a 503 (the database unreachable, or a lock or
/// statement timeout).
const UNAVAILABLE_RETRY_SECONDS: u32 = 5;

/// The problem answer for an error.
pub fn problem(error: &Error) -> Response {
    let response = Response::serialized(error.status(), PROBLEM_JSON, &Problem::from(error));
    match error {
        Error::Unauthorized
        | Error::InvalidCredentials
        | Error::InvalidRefreshToken
        | Error::RefreshTokenReused
        | Error::InvalidMfaToken
        | Error::InvalidMfaCode { at_login: true } => {
            response.with_header("www-authenticate", r#"Bearer realm="portcullis""#)
        }
        Error::InvalidToken => response.with_header(
            "www-authenticate",
            r#"Bearer realm="portcullis", error="invalid_token""#,
        ),
        Error::RateLimited { retry_after } => {
            response.with_header("retry-after", retry_after.to_string())
        }
        Error::Unavailable(_) => {
            response.with_header("retry-after", UNAVAILABLE_RETRY_SECONDS.to_string())
        }
        Error::MethodNotAllowed { allow } => response.with_header("allow", *allow),
        Error::Internal(reason) => {
            // The client learns nothing of it; the operator must.
            crate::log::warn(&format!("internal error: {reason}"));
            response
        }
        _ => response,
    }
}
