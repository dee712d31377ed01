//! The route table: path patterns, the methods each allows, and the handler of each.
//! Unknown paths answer 404 `not_found`, known paths with another method 405
//! `method_not_allowed` with `Allow`. Every answer gets the common security headers.

use super::handlers::{self, Context};
use super::problem::problem;
use super::{Request, Response};
use super::{cors, pages};
use crate::abuse;
use crate::app::App;
use crate::error::Error;

type Handler = fn(&Context<'_>) -> Result<Response, Error>;

/// One path and the handlers of its methods.
struct Route {
    /// Segments; `{name}` matches any one non-empty segment.
    pattern: &'static str,
    methods: &'static [(&'static str, Handler)],
    /// The `Allow` header for a 405.
    allow: &'static str,
}

const ROUTES: &[Route] = &[
    Route {
        pattern: "/health",
        methods: &[("GET", handlers::health)],
        allow: "GET",
    },
    Route {
        pattern: "/.well-known/jwks.json",
        methods: &[("GET", handlers::jwks)],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/validation-rules",
        methods: &[("GET", handlers::validation_rules)],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/auth/register",
        methods: &[("POST", handlers::register)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/login",
        methods: &[("POST", handlers::login)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/verify",
        methods: &[("GET", handlers::verify)],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/auth/token",
        methods: &[("POST", handlers::token)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/refresh",
        methods: &[("POST", handlers::refresh)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/logout",
        methods: &[("POST", handlers::logout)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/logout-all",
        methods: &[("POST", handlers::logout_all)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/email/verify-request",
        methods: &[("POST", handlers::verify_request)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/email/verify",
        methods: &[("POST", handlers::verify_email)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/password/forgot",
        methods: &[("POST", handlers::forgot_password)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/auth/password/reset",
        methods: &[("POST", handlers::reset_password)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/users/me",
        methods: &[
            ("GET", handlers::me),
            ("PATCH", handlers::update_me),
            ("DELETE", handlers::delete_me),
        ],
        allow: "GET, PATCH, DELETE",
    },
    Route {
        pattern: "/api/v1/users/me/password",
        methods: &[("POST", handlers::change_password)],
        allow: "POST",
    },
    Route {
        pattern: "/api/v1/admin/users",
        methods: &[("GET", handlers::admin_list_users)],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/admin/users/{id}",
        methods: &[
            ("GET", handlers::admin_get_user),
            ("PATCH", handlers::admin_update_user),
            ("DELETE", handlers::admin_delete_user),
        ],
        allow: "GET, PATCH, DELETE",
    },
    Route {
        pattern: "/api/v1/admin/users/{id}/sessions",
        methods: &[("DELETE", handlers::admin_revoke_sessions)],
        allow: "DELETE",
    },
    Route {
        pattern: "/api/v1/admin/audit",
        methods: &[("GET", handlers::admin_audit)],
        allow: "GET",
    },
    Route {
        pattern: "/verify-email",
        methods: &[
            ("GET", pages::verify_email_form),
            ("POST", pages::verify_email),
        ],
        allow: "GET, POST",
    },
    Route {
        pattern: "/reset-password",
        methods: &[
            ("GET", pages::reset_password_form),
            ("POST", pages::reset_password),
        ],
        allow: "GET, POST",
    },
    Route {
        pattern: "/api/v1/sessions",
        methods: &[("GET", handlers::list_sessions)],
        allow: "GET",
    },
    Route {
        pattern: "/api/v1/sessions/{id}",
        methods: &[("DELETE", handlers::revoke_session)],
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

fn route(app: &App<'_>, request: &Request) -> Result<Response, Error> {
    let (route, params) = ROUTES
        .iter()
        .find_map(|route| matches(route.pattern, &request.path).map(|params| (route, params)))
        .ok_or(Error::NotFound)?;
    if request.method == "OPTIONS" {
        return Ok(cors::preflight(app.settings, request, route.allow));
    }
    if request.method == "POST" && request.path.starts_with(RATE_LIMITED_PREFIX) {
        let ip = request.client_ip(&app.settings.trusted_proxies);
        abuse::check_rate_limit(app, ip.as_deref().unwrap_or("unknown"))?;
    }
    let handler = route
        .methods
        .iter()
        .find(|(method, _)| *method == request.method)
        .map(|(_, handler)| *handler)
        .ok_or(Error::MethodNotAllowed { allow: route.allow })?;
    handler(&Context {
        app,
        request,
        params,
    })
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
    response.headers.extend(
        [
            ("x-content-type-options", "nosniff"),
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    response
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
