//! `GET /openapi.json` and `GET /docs` (API.md §5): the document is OpenAPI 3.1 in
//! shape, describes exactly the routes the service answers (each documented path answers
//! `OPTIONS` with exactly the documented methods in `Allow`, every endpoint of API.md §5
//! is documented), and the docs page and its assets are served by the service itself
//! under a strict Content-Security-Policy.
//!
//! Paths the native host serves itself (`x-portcullis-served-by: host`, i.e. `/metrics`)
//! are not routes of the component: they are checked on their own.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::support::{TestApp, assert_problem, header, json_body, spawn_app};

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The endpoints of API.md §5 (method, path template).
const CONTRACT: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/api/v1/validation-rules"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("GET", "/api/v1/auth/verify"),
    ("POST", "/api/v1/auth/email/verify-request"),
    ("POST", "/api/v1/auth/email/verify"),
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
    ("GET", "/api/v1/users/me"),
    ("PATCH", "/api/v1/users/me"),
    ("POST", "/api/v1/users/me/password"),
    ("DELETE", "/api/v1/users/me"),
    ("GET", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions/{id}"),
    ("GET", "/api/v1/admin/users"),
    ("GET", "/api/v1/admin/users/{id}"),
    ("PATCH", "/api/v1/admin/users/{id}"),
    ("DELETE", "/api/v1/admin/users/{id}"),
    ("DELETE", "/api/v1/admin/users/{id}/sessions"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/metrics"),
    ("GET", "/verify-email"),
    ("POST", "/verify-email"),
    ("GET", "/reset-password"),
    ("POST", "/reset-password"),
];

fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json");
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    json_body(response, 200)
}

/// The methods of a path item, upper-case.
fn methods_of(item: &Value) -> BTreeSet<String> {
    METHODS
        .iter()
        .filter(|method| item.get(**method).is_some())
        .map(|method| method.to_uppercase())
        .collect()
}

fn served_by_host(item: &Value) -> bool {
    item.get("x-portcullis-served-by").and_then(Value::as_str) == Some("host")
}

/// `template` with every `{param}` replaced by a sample segment.
fn instantiate(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "sample"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|value| references(value, found));
        }
        Value::Array(items) => items.iter().for_each(|value| references(value, found)),
        _ => {}
    }
}

api_tests! {
    /// The document has the shape of OpenAPI 3.1: version, info, paths of operations
    /// with described responses, unique operation ids, resolvable references, path
    /// parameters declared, and the security schemes the operations name.
    fn the_document_is_openapi_3_1() {
        let app = spawn_app();
        let doc = document(&app);
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
        assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(doc["info"]["version"].as_str().is_some_and(|v| !v.is_empty()));
        let description = doc["info"]["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("/api/v1/auth/refresh") && description.contains("single-use"),
            "info.description must say how clients refresh: {description}"
        );
        let schemes = doc["components"]["securitySchemes"].as_object().expect("securitySchemes");
        let password = &schemes["oauth2"]["flows"]["password"];
        assert_eq!(password["tokenUrl"], "/api/v1/auth/token");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        let paths = doc["paths"].as_object().expect("paths");
        let mut operation_ids = BTreeSet::new();
        for (path, item) in paths {
            assert!(path.starts_with('/'), "{path}");
            let params: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            for method in methods_of(item) {
                let operation = &item[method.to_lowercase()];
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(operation_ids.insert(id.to_string()), "duplicate operationId {id}");
                let responses = operation["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} has no responses");
                for (status, response) in responses {
                    assert!(status.len() == 3 && status.parse::<u16>().is_ok(), "{status}");
                    assert!(response["description"].is_string(), "{method} {path} {status}");
                }
                for name in &params {
                    let declared = operation["parameters"].as_array().is_some_and(|list| {
                        list.iter().any(|p| p["name"] == *name && p["in"] == "path" && p["required"] == true)
                    });
                    assert!(declared, "{method} {path} does not declare {name}");
                }
                for requirement in operation["security"].as_array().into_iter().flatten() {
                    for scheme in requirement.as_object().expect("requirement").keys() {
                        assert!(schemes.contains_key(scheme), "{method} {path}: {scheme}");
                    }
                }
            }
        }
        let mut found = Vec::new();
        references(&doc, &mut found);
        for reference in found {
            let name = reference.strip_prefix("#/components/schemas/").expect("a local schema");
            assert!(doc["components"]["schemas"][name].is_object(), "{reference} does not resolve");
        }
    }

    /// Every path the component serves is documented with exactly the methods it
    /// answers, and every documented path is served: `OPTIONS` on each documented path
    /// answers 204 with the documented methods in `Allow`; the other methods get 405.
    /// Host-only paths are exactly `/metrics`, and it answers 404 without a metrics token.
    fn documented_routes_are_exactly_the_served_ones() {
        let app = spawn_app();
        let doc = document(&app);
        let paths = doc["paths"].as_object().expect("paths");
        let mut host_only = Vec::new();
        for (path, item) in paths {
            if served_by_host(item) {
                host_only.push(path.clone());
                continue;
            }
            let concrete = instantiate(path);
            let response = app.request(Method::OPTIONS, &concrete).send().expect("OPTIONS");
            assert_eq!(response.status(), 204, "OPTIONS {concrete}: the route is not served");
            let allow: BTreeSet<String> = header(&response, "allow")
                .unwrap_or_default()
                .split(',')
                .map(|method| method.trim().to_string())
                .filter(|method| method != "OPTIONS")
                .collect();
            assert_eq!(allow, methods_of(item), "{path}: served methods differ from documented ones");
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                if allow.contains(method) {
                    continue;
                }
                let method = Method::from_bytes(method.as_bytes()).expect("method");
                let response = app.request(method.clone(), &concrete).send().expect("request");
                assert_problem(response, 405, "method_not_allowed");
            }
        }
        assert_eq!(host_only, vec!["/metrics".to_string()]);
        let metrics = app.get("/metrics");
        assert_eq!(metrics.status(), 404, "no PORTCULLIS_METRICS_TOKEN: /metrics is 404");
        for (method, path) in CONTRACT {
            let item = &paths.get(*path).unwrap_or_else(|| panic!("{path} is not documented"));
            assert!(methods_of(item).contains(*method), "{method} {path} is not documented");
        }
    }

    /// `/docs` is an HTML page whose scripts and styles are files of this service (no
    /// inline script, no external URL), under a Content-Security-Policy that allows
    /// only this origin; each asset it names is served with its content type.
    fn the_docs_page_is_self_hosted_under_a_strict_policy() {
        let app = spawn_app();
        let page = app.get("/docs");
        assert_eq!(page.status(), 200);
        assert!(header(&page, "content-type").unwrap_or_default().starts_with("text/html"));
        let policy = header(&page, "content-security-policy").expect("a CSP");
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        assert!(directives.contains(&"default-src 'none'"), "{policy}");
        assert!(directives.contains(&"script-src 'self'"), "{policy}");
        assert!(directives.contains(&"connect-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-eval") && !policy.contains("http"), "{policy}");
        let html = page.text().expect("the page");
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
        let mut assets = Vec::new();
        for attribute in ["src=\"", "href=\""] {
            for piece in html.split(attribute).skip(1) {
                let target = piece.split('"').next().unwrap_or_default();
                assert!(!target.contains("//") && !target.contains(':'), "{target}");
                assets.push(target.to_string());
            }
        }
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count(),
            "inline script in {html}"
        );
        let mut kinds = BTreeSet::new();
        for asset in &assets {
            let response = app.get(&format!("/{}", asset.trim_start_matches('/')));
            assert_eq!(response.status(), 200, "{asset}");
            let content_type = header(&response, "content-type").unwrap_or_default();
            let expected = if asset.ends_with(".js") { "text/javascript" } else { "text/css" };
            assert!(content_type.starts_with(expected), "{asset}: {content_type}");
            assert_eq!(header(&response, "x-content-type-options").as_deref(), Some("nosniff"));
            kinds.insert(expected);
            if asset.ends_with("init.js") {
                let script = response.text().expect("init.js");
                assert!(script.contains("openapi.json") && script.contains("validatorUrl: null"));
            }
        }
        assert_eq!(kinds.len(), 2, "the page loads scripts and a style sheet: {assets:?}");
        let licence = app.get("/docs/assets/LICENSE");
        assert_eq!(licence.status(), 200);
        assert!(licence.text().expect("licence").contains("Apache License"));
        assert_problem(app.get("/docs/assets/nope.js"), 404, "not_found");
    }
}
