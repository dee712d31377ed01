//! Errors as RFC 9457 `application/problem+json` answers, with the headers API.md §2
//! asks for (`WWW-Authenticate` on 401, `Retry-After` on 429, `Allow` on 405).

use serde_json::json;

use super::Response;
use crate::error::Error;

/// The problem answer for an error.
pub fn problem(error: &Error) -> Response {
    let mut body = json!({
        "type": format!("urn:portcullis:problem:{}", error.code()),
        "title": error.title(),
        "status": error.status(),
        "detail": error.detail(),
        "code": error.code(),
    });
    if let Error::Validation(errors) = error {
        body["errors"] = json!(errors);
    }
    let response = Response {
        status: error.status(),
        headers: vec![("content-type".into(), "application/problem+json".into())],
        body: body.to_string().into_bytes(),
    };
    match error {
        Error::Unauthorized
        | Error::InvalidCredentials
        | Error::InvalidRefreshToken
        | Error::RefreshTokenReused => {
            response.with_header("www-authenticate", r#"Bearer realm="portcullis""#)
        }
        Error::InvalidToken => response.with_header(
            "www-authenticate",
            r#"Bearer realm="portcullis", error="invalid_token""#,
        ),
        Error::RateLimited { retry_after } => {
            response.with_header("retry-after", retry_after.to_string())
        }
        Error::MethodNotAllowed { allow } => response.with_header("allow", *allow),
        _ => response,
    }
}
