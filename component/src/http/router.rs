//! The route table: path patterns, the methods each allows, and the handler of each.
//! Unknown paths answer 404 `not_found`, known paths with another method 405
//! `method_not_allowed` with `Allow`. Every answer gets the common security headers.

use super::handlers::{self, Context};
use super::problem::problem;
use super::{Request, Response};
use crate::app::App;
use crate::error::Error;

type Handler = fn(&Context<'_>) -> Result<Response, Error>;

/// One path and the handlers of its methods.
struct Route {
    path: &'static str,
    methods: &'static [(&'static str, Handler)],
    /// The `Allow` header for a 405.
    allow: &'static str,
}

const ROUTES: &[Route] = &[
    Route {
        path: "/health",
        methods: &[("GET", handlers::health)],
        allow: "GET",
    },
    Route {
        path: "/api/v1/validation-rules",
        methods: &[("GET", handlers::validation_rules)],
        allow: "GET",
    },
    Route {
        path: "/api/v1/auth/register",
        methods: &[("POST", handlers::register)],
        allow: "POST",
    },
    Route {
        path: "/api/v1/auth/login",
        methods: &[("POST", handlers::login)],
        allow: "POST",
    },
    Route {
        path: "/api/v1/auth/verify",
        methods: &[("GET", handlers::verify)],
        allow: "GET",
    },
    Route {
        path: "/api/v1/users/me",
        methods: &[("GET", handlers::me)],
        allow: "GET",
    },
];

/// Answers one request.
pub fn handle(app: &App<'_>, request: &Request) -> Response {
    let answer = route(app, request).unwrap_or_else(|error| problem(&error));
    with_common_headers(answer)
}

fn route(app: &App<'_>, request: &Request) -> Result<Response, Error> {
    let route = ROUTES
        .iter()
        .find(|route| route.path == request.path)
        .ok_or(Error::NotFound)?;
    let handler = route
        .methods
        .iter()
        .find(|(method, _)| *method == request.method)
        .map(|(_, handler)| *handler)
        .ok_or(Error::MethodNotAllowed { allow: route.allow })?;
    handler(&Context { app, request })
}

fn with_common_headers(mut response: Response) -> Response {
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
