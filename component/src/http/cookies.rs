//! Browser sessions with cookies (`PORTCULLIS_COOKIE_SESSIONS`, docs/reference.md): a web
//! app never holds its refresh token where scripts can read it.
//!
//! - A token answer of login, register, the second factor or refresh to a request with
//!   `X-Portcullis-Session: cookie` moves its refresh token into the HttpOnly
//!   `portcullis_refresh` cookie (path `/api/v1/auth`) and sets `portcullis_csrf`, a
//!   random value scripts can read; the body keeps everything else.
//! - A refresh whose body names no token (empty, or `{}`) takes the refresh cookie, and a
//!   logout without a bearer token ends the refresh cookie's session; both are
//!   cookie-authenticated, so both need `X-CSRF-Token` equal to the CSRF cookie (double
//!   submit, compared in constant time), else 403 `csrf_failed`. Their answers are in
//!   cookies too: a refresh rotates both cookies.
//! - Logouts clear both cookies.
//!
//! All of it happens around the handlers ([`around`]): they see a JSON refresh and
//! answer as always. With the setting off, nothing here runs.

use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::handlers::Context;
use super::problem::problem;
use super::{Body, Request, Response, header};
use crate::app::App;
use crate::error::Error;
use crate::refresh;
use crate::sessions::Client;
use crate::tokens;

/// The HttpOnly cookie that holds the refresh token.
pub const REFRESH_COOKIE: &str = "portcullis_refresh";
/// The cookie scripts read and send back in [`CSRF_HEADER`].
pub const CSRF_COOKIE: &str = "portcullis_csrf";
/// The request header that asks for a session in cookies, with the value [`COOKIE_MODE`].
pub const SESSION_HEADER: &str = "x-portcullis-session";
pub const COOKIE_MODE: &str = "cookie";
/// The request header that must repeat the CSRF cookie on cookie-authenticated requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The refresh cookie is sent only to the auth endpoints.
const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
/// Random bytes of a CSRF value (128 bits).
const CSRF_BYTES: usize = 16;

const REFRESH_PATH: &str = "/api/v1/auth/refresh";
const LOGOUT_PATH: &str = "/api/v1/auth/logout";
const LOGOUT_ALL_PATH: &str = "/api/v1/auth/logout-all";
/// The endpoints whose token answers may go into cookies.
pub const TOKEN_ENDPOINTS: [&str; 4] = [
    "/api/v1/auth/login",
    "/api/v1/auth/register",
    "/api/v1/auth/mfa/verify",
    REFRESH_PATH,
];
/// The endpoints the refresh cookie (with the CSRF header) may authenticate.
pub const COOKIE_AUTHENTICATED: [&str; 2] = [REFRESH_PATH, LOGOUT_PATH];

/// Runs `handler` on the request, with cookie sessions around it when they are on.
pub fn around(
    context: &Context<'_>,
    handler: impl FnOnce(&Context<'_>) -> Result<Response, Error>,
) -> Result<Response, Error> {
    let (app, request) = (context.app, context.request);
    if !app.settings.cookie_sessions || request.method != "POST" {
        return handler(context);
    }
    let path = request.path.as_str();
    if path == REFRESH_PATH && names_no_token(request) {
        return refresh_by_cookie(context, handler);
    }
    if path == LOGOUT_PATH
        && request.header(header::AUTHORIZATION).is_none()
        && let Some(token) = cookie(request, REFRESH_COOKIE)
    {
        return logout_by_cookie(app, request, &token, &context.client(None));
    }
    let answer = handler(context)?;
    if TOKEN_ENDPOINTS.contains(&path) && asks_for_cookies(request) {
        Ok(into_cookies(app, answer))
    } else if (path == LOGOUT_PATH || path == LOGOUT_ALL_PATH) && is_success(&answer) {
        Ok(clear_cookies(app, answer))
    } else {
        Ok(answer)
    }
}

/// `X-Portcullis-Session: cookie`.
fn asks_for_cookies(request: &Request) -> bool {
    request
        .header(SESSION_HEADER)
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(COOKIE_MODE))
}

/// A refresh body that names no token: empty, or the empty object.
fn names_no_token(request: &Request) -> bool {
    match &request.body {
        Body::TooLarge => false,
        Body::Complete(bytes) if bytes.trim_ascii().is_empty() => true,
        Body::Complete(bytes) => {
            serde_json::from_slice::<Map<String, Value>>(bytes).is_ok_and(|map| map.is_empty())
        }
    }
}

/// A refresh by the refresh cookie: the handler gets the cookie's token as a JSON body,
/// and the answer goes into new cookies.
fn refresh_by_cookie(
    context: &Context<'_>,
    handler: impl FnOnce(&Context<'_>) -> Result<Response, Error>,
) -> Result<Response, Error> {
    let (app, request) = (context.app, context.request);
    let token = cookie(request, REFRESH_COOKIE).ok_or(Error::InvalidRefreshToken)?;
    check_csrf(request)?;
    let body = serde_json::json!({ "refresh_token": token }).to_string();
    let mut as_json = request.clone();
    as_json.body = Body::Complete(body.into_bytes());
    as_json
        .headers
        .retain(|(name, _)| name != header::CONTENT_TYPE);
    as_json
        .headers
        .push((header::CONTENT_TYPE.into(), "application/json".into()));
    let as_json = Context {
        app,
        request: &as_json,
        params: context.params.clone(),
    };
    match handler(&as_json) {
        Ok(answer) => Ok(into_cookies(app, answer)),
        // The cookie's token is dead: the browser may as well forget it.
        Err(error @ (Error::InvalidRefreshToken | Error::RefreshTokenReused)) => {
            Ok(clear_cookies(app, problem(&error)))
        }
        Err(error) => Err(error),
    }
}

/// A logout by the refresh cookie alone: ends that cookie's session.
fn logout_by_cookie(
    app: &App<'_>,
    request: &Request,
    token: &str,
    client: &Client,
) -> Result<Response, Error> {
    check_csrf(request)?;
    let answer = match refresh::end_session(app, token, client) {
        Ok(()) => Response::empty(204),
        Err(error @ Error::InvalidRefreshToken) => problem(&error),
        Err(error) => return Err(error),
    };
    Ok(clear_cookies(app, answer))
}

/// The double-submit check: `X-CSRF-Token` equals the CSRF cookie, compared in constant
/// time.
fn check_csrf(request: &Request) -> Result<(), Error> {
    let expected = cookie(request, CSRF_COOKIE).unwrap_or_default();
    let presented = request.header(CSRF_HEADER).unwrap_or_default().trim();
    let matches: bool = expected.as_bytes().ct_eq(presented.as_bytes()).into();
    if expected.is_empty() || !matches {
        return Err(Error::CsrfFailed);
    }
    Ok(())
}

/// The value of the first cookie called `name` in the request's `Cookie` headers.
fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .iter()
        .filter(|(key, _)| key == "cookie")
        .flat_map(|(_, value)| Cookie::split_parse(value.as_str()))
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
        .filter(|value| !value.is_empty())
}

fn is_success(response: &Response) -> bool {
    (200..300).contains(&response.status)
}

/// Moves a token answer's refresh token into the refresh cookie and adds a new CSRF
/// cookie. Answers without a refresh token (errors, a registration that waits for
/// verification) pass unchanged.
fn into_cookies(app: &App<'_>, answer: Response) -> Response {
    if !is_success(&answer) {
        return answer;
    }
    let Ok(mut body) = serde_json::from_slice::<Map<String, Value>>(&answer.body) else {
        return answer;
    };
    let Some(Value::String(refresh_token)) = body.remove("refresh_token") else {
        return answer;
    };
    let csrf = tokens::encode_opaque(&app.env.random_bytes(CSRF_BYTES));
    let max_age = Duration::seconds(i64::from(app.settings.refresh_ttl));
    let secure = app.settings.cookie_secure;
    let mut rewritten = Response::json(answer.status, &body);
    rewritten.headers = answer.headers;
    rewritten
        .with_header(
            "set-cookie",
            refresh_cookie(refresh_token, max_age, secure).to_string(),
        )
        .with_header("set-cookie", csrf_cookie(csrf, max_age, secure).to_string())
}

/// Adds the `Set-Cookie` headers that remove both cookies (`Max-Age=0`).
fn clear_cookies(app: &App<'_>, answer: Response) -> Response {
    let secure = app.settings.cookie_secure;
    answer
        .with_header(
            "set-cookie",
            refresh_cookie(String::new(), Duration::ZERO, secure).to_string(),
        )
        .with_header(
            "set-cookie",
            csrf_cookie(String::new(), Duration::ZERO, secure).to_string(),
        )
}

fn refresh_cookie(value: String, max_age: Duration, secure: bool) -> Cookie<'static> {
    Cookie::build((REFRESH_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path(REFRESH_COOKIE_PATH)
        .max_age(max_age)
        .build()
}

fn csrf_cookie(value: String, max_age: Duration, secure: bool) -> Cookie<'static> {
    Cookie::build((CSRF_COOKIE, value))
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(max_age)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_exactly_the_documented_attributes() {
        let max_age = Duration::seconds(604_800);
        assert_eq!(
            refresh_cookie("r".into(), max_age, false).to_string(),
            "portcullis_refresh=r; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age=604800"
        );
        assert_eq!(
            csrf_cookie("c".into(), max_age, true).to_string(),
            "portcullis_csrf=c; SameSite=Strict; Secure; Path=/; Max-Age=604800"
        );
        assert_eq!(
            refresh_cookie(String::new(), Duration::ZERO, false).to_string(),
            "portcullis_refresh=; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age=0"
        );
    }

    fn with_cookies(header_value: &str, csrf_header: Option<&str>) -> Request {
        let mut headers = vec![("cookie".to_string(), header_value.to_string())];
        if let Some(value) = csrf_header {
            headers.push((CSRF_HEADER.to_string(), value.to_string()));
        }
        Request {
            headers,
            ..Request::default()
        }
    }

    #[test]
    fn the_csrf_header_must_repeat_the_csrf_cookie() {
        let cookies = "a=1; portcullis_csrf=abc; portcullis_refresh=r";
        assert_eq!(check_csrf(&with_cookies(cookies, Some("abc"))), Ok(()));
        for wrong in [None, Some(""), Some("abd"), Some("ab"), Some("abcd")] {
            assert_eq!(
                check_csrf(&with_cookies(cookies, wrong)),
                Err(Error::CsrfFailed)
            );
        }
        // An empty cookie never matches, not even an empty header.
        let empty = with_cookies("portcullis_csrf=", Some(""));
        assert_eq!(check_csrf(&empty), Err(Error::CsrfFailed));
        assert_eq!(
            cookie(&with_cookies(cookies, None), REFRESH_COOKIE),
            Some("r".into())
        );
    }

    #[test]
    fn only_an_empty_body_or_object_names_no_token() {
        let body = |text: &str| Request {
            body: Body::Complete(text.as_bytes().to_vec()),
            ..Request::default()
        };
        assert!(names_no_token(&body("")));
        assert!(names_no_token(&body(" \n")));
        assert!(names_no_token(&body("{ }")));
        assert!(!names_no_token(&body(r#"{"refresh_token":"x"}"#)));
        assert!(!names_no_token(&body("[]")));
        assert!(!names_no_token(&body("{")));
    }
}
