//! The route table: path patterns, the methods each allows, and the handler of each.
//! Unknown paths answer 404 `not_found`, known paths with another method 405
//! `method_not_allowed` with `Allow`. Every answer gets the common security headers.
//!
//! Each method of a route names its handler and its description: the OpenAPI document
//! (`openapi.rs`) is built from this table, so a route cannot exist undescribed.

use super::handlers::{self, Context};
use super::openapi::{Describe, described};
use super::problem::problem;
use super::{Request, Response};
use super::{cookies, cors, docs, mfa, openapi, pages};
use crate::abuse;
use crate::app::App;
use crate::error::Error;
use crate::import;
use crate::settings::{RateLimitGroup, Settings};

type Handler = fn(&Context<'_>) -> Result<Response, Error>;

/// One path, and the handler and the OpenAPI description of each of its methods.
struct Route {
    /// Segments; `{name}` matches any one non-empty segment.
    pattern: &'static str,
    methods: &'static [(&'static str, Handler, Describe)],
    /// The `Allow` header for a 405.
    allow: &'static str,
}

const ROUTES: &[Route] = &[
    Route {
        pattern: "/openapi.json",
        methods: &[(
            "GET",
            openapi::openapi_json,
            described::<openapi::__path_openapi_json>,
        )],
        allow: "GET",
    },
    Route {
        pattern: "/docs",
        methods: &[("GET", docs::page, described::<docs::__path_page>)],
        allow: "GET",
    },
    Route {
        pattern: "/docs/assets/{file}",
        methods: &[("GET", docs::asset, described::<docs::__path_asset>)],
        allow: "GET",
    },
    Route {
        pattern: "/health",
        methods: &[(
            "GET",
            handlers::health,
            described::<handlers::__path_health>,
        )],
        allow: "GET",
    },
    Route {
        pattern: "/.well-known/jwks.json",
        methods: &[("GET", handlers::jwks, described::<handlers::__path_jwks>)],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/validation-rules",
        methods: &[(
            "GET",
            handlers::validation_rules,
            described::<handlers::__path_validation_rules>,
        )],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/auth/register",
        methods: &[(
            "POST",
            handlers::register,
            described::<handlers::__path_register>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/login",
        methods: &[("POST", handlers::login, described::<handlers::__path_login>)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/verify",
        methods: &[(
            "GET",
            handlers::verify,
            described::<handlers::__path_verify>,
        )],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/auth/token",
        methods: &[("POST", handlers::token, described::<handlers::__path_token>)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/refresh",
        methods: &[(
            "POST",
            handlers::refresh,
            described::<handlers::__path_refresh>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/logout",
        methods: &[(
            "POST",
            handlers::logout,
            described::<handlers::__path_logout>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/logout-all",
        methods: &[(
            "POST",
            handlers::logout_all,
            described::<handlers::__path_logout_all>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/email/verify-request",
        methods: &[(
            "POST",
            handlers::verify_request,
            described::<handlers::__path_verify_request>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/email/verify",
        methods: &[(
            "POST",
            handlers::verify_email,
            described::<handlers::__path_verify_email>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/password/forgot",
        methods: &[(
            "POST",
            handlers::forgot_password,
            described::<handlers::__path_forgot_password>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/password/reset",
        methods: &[(
            "POST",
            handlers::reset_password,
            described::<handlers::__path_reset_password>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/users/me",
        methods: &[
            ("GET", handlers::me, described::<handlers::__path_me>),
            (
                "PATCH",
                handlers::update_me,
                described::<handlers::__path_update_me>,
            ),
            (
                "DELETE",
                handlers::delete_me,
                described::<handlers::__path_delete_me>,
            ),
        ],
        allow: "GET, PATCH, DELETE",
    },
    Route {
        pattern: "/api/v1/users/me/mfa",
        methods: &[(
            "DELETE",
            mfa::disable_mfa,
            described::<mfa::__path_disable_mfa>,
        )],
        allow: "DELETE",
    },
    Route {
        pattern: "/api/v1/users/me/mfa/totp",
        methods: &[("POST", mfa::enrol_totp, described::<mfa::__path_enrol_totp>)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/users/me/mfa/totp/confirm",
        methods: &[(
            "POST",
            mfa::confirm_totp,
            described::<mfa::__path_confirm_totp>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/users/me/mfa/recovery-codes",
        methods: &[(
            "POST",
            mfa::regenerate_recovery_codes,
            described::<mfa::__path_regenerate_recovery_codes>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/mfa/verify",
        methods: &[("POST", mfa::mfa_verify, described::<mfa::__path_mfa_verify>)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/users/me/password",
        methods: &[(
            "POST",
            handlers::change_password,
            described::<handlers::__path_change_password>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/admin/users",
        methods: &[(
            "GET",
            handlers::admin_list_users,
            described::<handlers::__path_admin_list_users>,
        )],
        allow: "GET",
    },
    Route {
        pattern: IMPORT_PATH,
        methods: &[(
            "POST",
            handlers::admin_import_users,
            described::<handlers::__path_admin_import_users>,
        )],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/admin/users/{id}",
        methods: &[
            (
                "GET",
                handlers::admin_get_user,
                described::<handlers::__path_admin_get_user>,
            ),
            (
                "PATCH",
                handlers::admin_update_user,
                described::<handlers::__path_admin_update_user>,
            ),
            (
                "DELETE",
                handlers::admin_delete_user,
                described::<handlers::__path_admin_delete_user>,
            ),
        ],
        allow: "GET, PATCH, DELETE",
    },
    Route {
        pattern: "/api/v1/admin/users/{id}/sessions",
        methods: &[(
            "DELETE",
            handlers::admin_revoke_sessions,
            described::<handlers::__path_admin_revoke_sessions>,
        )],
        allow: "DELETE",
    },
    Route {
        pattern: "/api/v1/admin/users/{id}/mfa",
        methods: &[(
            "DELETE",
            mfa::admin_disable_mfa,
            described::<mfa::__path_admin_disable_mfa>,
        )],
        allow: "DELETE",
    },
    Route {
        pattern: "/api/v1/admin/audit",
        methods: &[(
            "GET",
            handlers::admin_audit,
            described::<handlers::__path_admin_audit>,
        )],
        allow: "GET",
    },
    Route {
        pattern: "/verify-email",
        methods: &[
            (
                "GET",
                pages::verify_email_form,
                described::<pages::__path_verify_email_form>,
            ),
            (
                "POST",
                pages::verify_email,
                described::<pages::__path_verify_email>,
            ),
        ],
        allow: "GET, POST",
    },
    Route {
        pattern: "/reset-password",
        methods: &[
            (
                "GET",
                pages::reset_password_form,
                described::<pages::__path_reset_password_form>,
            ),
            (
                "POST",
                pages::reset_password,
                described::<pages::__path_reset_password>,
            ),
        ],
        allow: "GET, POST",
    },
    Route {
        pattern: "/api/v1/sessions",
        methods: &[(
            "GET",
            handlers::list_sessions,
            described::<handlers::__path_list_sessions>,
        )],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/sessions/{id}",
        methods: &[(
            "DELETE",
            handlers::revoke_session,
            described::<handlers::__path_revoke_session>,
        )],
        allow: "DELETE",
    },
];

/// Answers one request.
pub fn handle(app: &App<'_>, request: &Request) -> Response {
    let answer = route(app, request).unwrap_or_else(|error| problem(&error));
    let answer = cors::allow(app.settings, request, answer);
    with_common_headers(app, answer)
}

/// The POST endpoints under this prefix count against the per-IP rate limit.
const RATE_LIMITED_PREFIX: &str = "/api/v1/auth/";
/// The form posts of the mailed links' pages, which stand for `/auth/email/verify` and
/// `/auth/password/reset` and count against the same limit (API.md §11).
const RATE_LIMITED_PAGES: [&str; 2] = ["/verify-email", "/reset-password"];

/// The endpoints of the rate-limit groups that may have limits of their own
/// (`PORTCULLIS_RATE_LIMIT_<GROUP>`); the form posts of the mailed links' pages belong to
/// the group of the endpoint they stand for.
const RATE_LIMIT_GROUPS: [(&str, RateLimitGroup); 10] = [
    ("/api/v1/auth/login", RateLimitGroup::Login),
    ("/api/v1/auth/token", RateLimitGroup::Login),
    ("/api/v1/auth/mfa/verify", RateLimitGroup::Login),
    ("/api/v1/auth/register", RateLimitGroup::Register),
    ("/api/v1/auth/password/forgot", RateLimitGroup::Password),
    ("/api/v1/auth/password/reset", RateLimitGroup::Password),
    ("/reset-password", RateLimitGroup::Password),
    ("/api/v1/auth/email/verify-request", RateLimitGroup::Email),
    ("/api/v1/auth/email/verify", RateLimitGroup::Email),
    ("/verify-email", RateLimitGroup::Email),
];

/// The rate-limit group of a rate-limited path.
fn rate_limit_group(path: &str) -> RateLimitGroup {
    RATE_LIMIT_GROUPS
        .iter()
        .find(|(group_path, _)| *group_path == path)
        .map_or(RateLimitGroup::Default, |(_, group)| *group)
}

/// The endpoints whose requests may hash a password with Argon2id (tens of milliseconds
/// of CPU each, and ~19 MiB of memory while it runs). `/openapi.json` marks them with
/// [`HASHES_PASSWORD`] so that a host can admit them a few at a time (the native host
/// runs at most one per core and queues the rest).
pub const PASSWORD_HASHING_ENDPOINTS: [(&str, &str); 10] = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/password/reset"),
    ("POST", "/reset-password"),
    ("POST", "/api/v1/users/me/password"),
    ("PATCH", "/api/v1/users/me"),
    ("DELETE", "/api/v1/users/me"),
    ("POST", "/api/v1/users/me/mfa/totp"),
    ("DELETE", "/api/v1/users/me/mfa"),
];

/// The OpenAPI extension (`true`) on the operations of [`PASSWORD_HASHING_ENDPOINTS`].
pub const HASHES_PASSWORD: &str = "x-portcullis-hashes-password";

/// True when requests with `method` to `pattern` may hash a password.
pub fn hashes_password(method: &str, pattern: &str) -> bool {
    PASSWORD_HASHING_ENDPOINTS.contains(&(method, pattern))
}

/// True when requests with `method` to `path` count against the per-IP rate limit.
pub fn is_rate_limited(method: &str, path: &str) -> bool {
    method == "POST"
        && (path.starts_with(RATE_LIMITED_PREFIX) || RATE_LIMITED_PAGES.contains(&path))
}

/// The most body bytes a host reads for a request with `method` to `path`:
/// `max_body_bytes`, except for the user import, which takes up to
/// [`import::MAX_BODY_BYTES`] of JSON Lines (API.md §9).
pub fn body_limit(settings: &Settings, method: &str, path: &str) -> usize {
    if method == "POST" && path == IMPORT_PATH {
        import::MAX_BODY_BYTES
    } else {
        settings.max_body_bytes
    }
}

/// The user import's path (matched before `/api/v1/admin/users/{id}`).
pub const IMPORT_PATH: &str = "/api/v1/admin/users/import";

/// Every route pattern with each of its methods and their descriptions, in table order.
pub fn endpoints() -> impl Iterator<Item = (&'static str, &'static str, Describe)> {
    ROUTES.iter().flat_map(|route| {
        route
            .methods
            .iter()
            .map(|(method, _, describe)| (route.pattern, *method, *describe))
    })
}

fn route(app: &App<'_>, request: &Request) -> Result<Response, Error> {
    let (route, params) = ROUTES
        .iter()
        .find_map(|route| matches(route.pattern, &request.path).map(|params| (route, params)))
        .ok_or(Error::NotFound)?;
    if request.method == "OPTIONS" {
        return Ok(cors::preflight(app.settings, request, route.allow));
    }
    if is_rate_limited(&request.method, &request.path) {
        let ip = request.client_ip(&app.settings.trusted_proxies);
        let group = rate_limit_group(&request.path);
        abuse::check_rate_limit(app, group, ip.as_deref().unwrap_or("unknown"))?;
    }
    let handler = route
        .methods
        .iter()
        .find(|(method, _, _)| *method == request.method)
        .map(|(_, handler, _)| *handler)
        .ok_or(Error::MethodNotAllowed { allow: route.allow })?;
    let context = Context {
        app,
        request,
        params,
    };
    cookies::around(&context, handler)
}

/// The values of the `{…}` segments when `path` matches `pattern`.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    let mut params = Vec::new();
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(expected), Some(actual)) if expected.starts_with('{') => {
                if actual.is_empty() {
                    return None;
                }
                params.push(actual.to_string());
            }
            (Some(expected), Some(actual)) if expected == actual => {}
            _ => return None,
        }
    }
}

fn with_common_headers(app: &App<'_>, mut response: Response) -> Response {
    if app.settings.public_url.starts_with("https://") {
        response.headers.push((
            "strict-transport-security".into(),
            "max-age=31536000; includeSubDomains".into(),
        ));
    }
    let has_cache_control = response
        .headers
        .iter()
        .any(|(name, _)| name == "cache-control");
    if !has_cache_control {
        response = response.with_header("cache-control", "no-store");
    }
    response
        .with_header("x-content-type-options", "nosniff")
        .with_header("referrer-policy", "no-referrer")
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_whole_segments() {
        assert_eq!(matches("/health", "/health"), Some(vec![]));
        assert_eq!(matches("/health", "/health/"), None);
        assert_eq!(matches("/a/{id}", "/a/42"), Some(vec!["42".to_string()]));
        assert_eq!(matches("/a/{id}", "/a/"), None);
        assert_eq!(matches("/a/{id}", "/a/1/2"), None);
    }
}
