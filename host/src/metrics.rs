//! The host's metrics, served as Prometheus text at `/metrics` (see `server`).
//!
//! Per request: `portcullis_http_requests_total{method,route,status}` and
//! `portcullis_http_request_duration_seconds{method,route}` (until the answer's head is
//! ready), and for `POST /api/v1/auth/login` and `/api/v1/auth/token`
//! `portcullis_logins_total{endpoint,outcome}`. Read at each scrape: instances made and
//! alive, and the database pool's connections. Set by the retention loop:
//! `portcullis_db_rows{table}`.
//!
//! Labels are bounded: `route` is the template of the component's route the path matches
//! (`/api/v1/sessions/{id}`, from its OpenAPI document), or `unmatched`; never the path
//! itself, which may hold ids or tokens. `method` is one of the standard methods or
//! `other`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::{Method, StatusCode};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, PullingGauge,
    Registry, TextEncoder,
};

use crate::admission::Admission;
use crate::db::Database;
use crate::engine::MAX_INSTANCES;
use crate::instances::Instances;

/// The `Content-Type` of `/metrics`: the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of the host's own `/metrics`.
pub const METRICS_ROUTE: &str = "/metrics";

/// The route label of paths that match no route.
const UNMATCHED: &str = "unmatched";

/// Request durations, in seconds: a token check takes well under a millisecond, a login
/// (Argon2id) tens of milliseconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The endpoints whose answers are counted as logins, and their `endpoint` label.
const LOGIN_ENDPOINTS: [(&str, &str); 2] = [
    ("/api/v1/auth/login", "login"),
    ("/api/v1/auth/token", "token"),
];

/// Every metric, and the route templates the `route` label comes from.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    logins: IntCounterVec,
    routes: Routes,
}

impl Metrics {
    /// Registers every metric; the instance and pool metrics read `instances` and
    /// `database` at each scrape.
    pub fn new(
        routes: Routes,
        instances: &Arc<Instances>,
        database: &Database,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "portcullis_http_requests_total",
                "HTTP requests answered, by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_http_request_duration_seconds",
                "Time from a request's arrival to its answer's head, by method and route template.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "portcullis_logins_total",
                "Answers of POST /api/v1/auth/login (endpoint=\"login\") and /api/v1/auth/token \
                 (endpoint=\"token\", both grants), by outcome.",
            ),
            &["endpoint", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        register_instances(&registry, instances)?;
        register_pool(&registry, database, max_connections)?;
        Ok(Self {
            registry,
            requests,
            durations,
            logins,
            routes,
        })
    }

    /// The queue of requests that hash a password: how many wait now.
    pub fn register_admission(&self, admission: &Arc<Admission>) -> anyhow::Result<()> {
        let queue = Arc::clone(admission);
        self.registry.register(Box::new(PullingGauge::new(
            "portcullis_hash_queue_waiting",
            "Requests that hash a password waiting for a core now (PORTCULLIS_HASH_QUEUE \
             bounds it).",
            Box::new(move || queue.waiting() as f64),
        )?))?;
        Ok(())
    }

    /// The rows per table (`portcullis_db_rows{table}`), set by the retention loop.
    pub fn register_table_rows(&self) -> anyhow::Result<IntGaugeVec> {
        let rows = IntGaugeVec::new(
            Opts::new(
                "portcullis_db_rows",
                "Rows per table, counted after each retention check (about every 30 s).",
            ),
            &["table"],
        )?;
        self.registry.register(Box::new(rows.clone()))?;
        Ok(rows)
    }

    /// The route label of `path`.
    pub fn route(&self, path: &str) -> &str {
        self.routes.template(path)
    }

    /// Counts one answered request.
    pub fn record(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        if let Ok(counter) =
            self.requests
                .get_metric_with_label_values(&[method, route, status.as_str()])
        {
            counter.inc();
        }
        if let Ok(histogram) = self
            .durations
            .get_metric_with_label_values(&[method, route])
        {
            histogram.observe(elapsed.as_secs_f64());
        }
        if method == "POST"
            && let Some(endpoint) = login_endpoint(route)
            && let Ok(counter) = self
                .logins
                .get_metric_with_label_values(&[endpoint, login_outcome(endpoint, status)])
        {
            counter.inc();
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> anyhow::Result<Vec<u8>> {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .context("encoding the metrics")?;
        Ok(text)
    }
}

/// The method label: a standard method, or `other`.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const LABELS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .iter()
        .position(|standard| standard == method)
        .map_or("other", |index| LABELS[index])
}

fn login_endpoint(route: &str) -> Option<&'static str> {
    LOGIN_ENDPOINTS
        .iter()
        .find(|(template, _)| *template == route)
        .map(|(_, endpoint)| *endpoint)
}

/// What a login answer's status says (API.md §5). `/auth/token` answers every refusal
/// with 400 (RFC 6749: `invalid_grant` for wrong credentials or refresh tokens, also
/// `invalid_request`), counted as `invalid_grant`; `/auth/login` answers wrong
/// credentials with 401.
fn login_outcome(endpoint: &str, status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "success",
        400 if endpoint == "token" => "invalid_grant",
        400 | 413 | 415 | 422 => "invalid_request",
        401 => "invalid_credentials",
        403 => "forbidden",
        409 => "session_limit_reached",
        429 => "rate_limited",
        500..=599 => "error",
        _ => "other",
    }
}

/// Instances made since start-up, and slots taken now.
fn register_instances(registry: &Registry, instances: &Arc<Instances>) -> anyhow::Result<()> {
    let made = Arc::clone(instances);
    registry.register(Box::new(PulledCounter::new(
        "portcullis_instances_created_total",
        "Component instances made (one per request, plus the host's own calls).",
        Box::new(move || made.instantiations() as f64),
    )?))?;
    let alive = Arc::clone(instances);
    registry.register(Box::new(PullingGauge::new(
        "portcullis_instances_in_use",
        "Component instance slots taken now.",
        Box::new(move || alive.in_use() as f64),
    )?))?;
    registry.register(Box::new(PullingGauge::new(
        "portcullis_instances_max",
        "Component instances that may be alive at once.",
        Box::new(|| f64::from(MAX_INSTANCES)),
    )?))?;
    Ok(())
}

/// The pool's open and idle connections, and its size limit.
fn register_pool(
    registry: &Registry,
    database: &Database,
    max_connections: u32,
) -> anyhow::Result<()> {
    let open = database.clone();
    registry.register(Box::new(PullingGauge::new(
        "portcullis_db_pool_connections",
        "Database connections open now.",
        Box::new(move || f64::from(connections(&open).0)),
    )?))?;
    let idle = database.clone();
    registry.register(Box::new(PullingGauge::new(
        "portcullis_db_pool_idle_connections",
        "Database connections open and idle now.",
        Box::new(move || connections(&idle).1 as f64),
    )?))?;
    registry.register(Box::new(PullingGauge::new(
        "portcullis_db_pool_max_connections",
        "The most database connections the pool opens (PORTCULLIS_DB_MAX_CONNECTIONS).",
        Box::new(move || f64::from(max_connections)),
    )?))?;
    Ok(())
}

/// Open and idle connections of `database`'s pool.
fn connections(database: &Database) -> (u32, usize) {
    match database {
        Database::Sqlite(pool) => pool.connections(),
        Database::Postgres(pool) => pool.connections(),
        Database::MySql(pool) => pool.connections(),
    }
}

/// A counter whose value is read at each scrape (the counterpart of `PullingGauge`).
struct PulledCounter {
    desc: Desc,
    value: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl PulledCounter {
    fn new(
        name: &str,
        help: &str,
        value: Box<dyn Fn() -> f64 + Send + Sync>,
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(name.into(), help.into(), Vec::new(), Default::default())?;
        Ok(Self { desc, value })
    }
}

impl Collector for PulledCounter {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut counter = proto::Counter::default();
        counter.set_value((self.value)());
        let mut metric = proto::Metric::default();
        metric.set_counter(counter);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

/// The component's route templates (`paths` of its OpenAPI document), matched by
/// whole segments: `{name}` is one non-empty segment.
pub struct Routes(matchit::Router<String>);

impl Routes {
    /// The routes of an OpenAPI document (JSON).
    pub fn from_openapi(document: &[u8]) -> anyhow::Result<Self> {
        let document: serde_json::Value =
            serde_json::from_slice(document).context("the OpenAPI document is not JSON")?;
        let Some(paths) = document.get("paths").and_then(serde_json::Value::as_object) else {
            bail!("the OpenAPI document has no `paths` object");
        };
        Self::new(paths.keys().map(String::as_str))
    }

    /// The routes of these templates.
    pub fn new<'a>(templates: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        let mut router = matchit::Router::new();
        for template in templates {
            router
                .insert(matcher_pattern(template)?, template.to_owned())
                .with_context(|| format!("the route {template:?}"))?;
        }
        Ok(Self(router))
    }

    /// The template `path` matches, or `unmatched`.
    fn template(&self, path: &str) -> &str {
        self.0
            .at(path)
            .map_or(UNMATCHED, |found| found.value.as_str())
    }
}

/// The `matchit` pattern of a template: each `{…}` segment becomes `{p<index>}` (the
/// names do not matter, and must not make two templates conflict).
fn matcher_pattern(template: &str) -> anyhow::Result<String> {
    if !template.starts_with('/') {
        bail!("the route {template:?} does not start with `/`");
    }
    let segments = template.split('/').enumerate().map(|(index, segment)| {
        let parameter = segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}');
        if parameter {
            Ok(format!("{{p{index}}}"))
        } else if segment.contains(['{', '}', '*']) {
            bail!("the route {template:?} has a segment that is not a whole parameter")
        } else {
            Ok(segment.to_owned())
        }
    });
    Ok(segments.collect::<anyhow::Result<Vec<_>>>()?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::from_openapi(
            br#"{"openapi":"3.1.0","paths":{
                "/health":{},
                "/api/v1/sessions":{},
                "/api/v1/sessions/{id}":{},
                "/api/v1/admin/users/{id}":{},
                "/api/v1/admin/users/{user_id}/sessions":{},
                "/api/v1/users/me":{}
            }}"#,
        )
        .unwrap()
    }

    #[test]
    fn paths_get_their_template() {
        let routes = routes();
        assert_eq!(routes.template("/health"), "/health");
        assert_eq!(
            routes.template("/api/v1/sessions/abc-123"),
            "/api/v1/sessions/{id}"
        );
        assert_eq!(
            routes.template("/api/v1/admin/users/u1/sessions"),
            "/api/v1/admin/users/{user_id}/sessions"
        );
        assert_eq!(routes.template("/api/v1/users/me"), "/api/v1/users/me");
    }

    #[test]
    fn other_paths_are_unmatched() {
        let routes = routes();
        for path in [
            "/",
            "/health/",
            "/api/v1/sessions/",
            "/api/v1/sessions/a/b",
            "/secret-token-in-path",
        ] {
            assert_eq!(routes.template(path), UNMATCHED, "{path}");
        }
    }

    #[test]
    fn bad_documents_are_refused() {
        assert!(Routes::from_openapi(b"not json").is_err());
        assert!(Routes::from_openapi(br#"{"openapi":"3.1.0"}"#).is_err());
        assert!(Routes::new(["relative"]).is_err());
        assert!(Routes::new(["/a/{b}c"]).is_err());
        assert!(Routes::new(["/a", "/a"]).is_err());
    }

    #[test]
    fn login_answers_are_classified() {
        assert_eq!(login_endpoint("/api/v1/auth/login"), Some("login"));
        assert_eq!(login_endpoint("/api/v1/auth/refresh"), None);
        let outcome = |status| login_outcome("login", status);
        assert_eq!(outcome(StatusCode::OK), "success");
        assert_eq!(outcome(StatusCode::UNAUTHORIZED), "invalid_credentials");
        assert_eq!(outcome(StatusCode::BAD_REQUEST), "invalid_request");
        assert_eq!(outcome(StatusCode::TOO_MANY_REQUESTS), "rate_limited");
        assert_eq!(outcome(StatusCode::CONFLICT), "session_limit_reached");
        assert_eq!(
            login_outcome("token", StatusCode::BAD_REQUEST),
            "invalid_grant"
        );
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
