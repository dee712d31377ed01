//! Observability over HTTP: `/metrics` (404 without `PORTCULLIS_METRICS_TOKEN`, the
//! bearer token otherwise, Prometheus text with requests by route template and status,
//! latencies, logins, instances and the database pool), `X-Request-Id` on every answer,
//! access-log lines in text and JSON that name the request, and no secret in any log
//! line.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::mail::{MAIL_DEADLINE, SmtpSink, mailing_app, private_database};
use crate::support::{TEST_JWT_SECRET, TestApp, assert_problem, header, json_body, spawn_app};

/// The metrics token of the apps that serve `/metrics`.
const METRICS_TOKEN: &str = "metrics-0123456789-abcdef";

/// A password that passes the `complex` policy for any user of `unique_user`.
const NEW_PASSWORD: &str = "N3w!Quiet-Meadow";

/// Everything down to `trace`, except the compiler's own millions of lines when the
/// component is compiled (on a cold component cache).
const TRACE_ALL: &str =
    "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime_internal_cranelift=info";

/// How long to wait for the app's log to show a line.
const LOG_DEADLINE: Duration = Duration::from_secs(30);

fn metrics_app(overrides: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("PORTCULLIS_METRICS_TOKEN", METRICS_TOKEN)];
    settings.extend_from_slice(overrides);
    TestApp::spawn_with(&settings)
}

/// `GET /metrics` with the metrics token; insists on 200 and returns the text.
fn scrape(app: &TestApp) -> String {
    let response = app.get_with_token("/metrics", METRICS_TOKEN);
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type").unwrap_or_default();
    let text = response.text().expect("the metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Prometheus text is expected, got {content_type:?}"
    );
    text
}

/// One sample of Prometheus text: its name and labels.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Every sample of a Prometheus text exposition, by series.
fn exposition(text: &str) -> BTreeMap<Series, f64> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            parse_sample(line).unwrap_or_else(|| panic!("not a Prometheus sample: {line:?}"))
        })
        .collect()
}

fn parse_sample(line: &str) -> Option<(Series, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, labels)) = series.split_once('{') else {
        let labels = BTreeMap::new();
        return Some((
            Series {
                name: series.into(),
                labels,
            },
            value,
        ));
    };
    let mut rest = labels.strip_suffix('}')?;
    let mut parsed = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let end = after.find('"')?;
        parsed.insert(key.to_owned(), after[..end].to_owned());
        rest = after[end + 1..].trim_start_matches(',');
    }
    let name = name.to_owned();
    Some((
        Series {
            name,
            labels: parsed,
        },
        value,
    ))
}

/// The value of the series `name{labels}`, 0 when absent.
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let series = Series {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    };
    samples.get(&series).copied().unwrap_or(0.0)
}

/// The only sample of a family without labels.
fn single(samples: &BTreeMap<Series, f64>, name: &str) -> f64 {
    let found: Vec<_> = samples.iter().filter(|(s, _)| s.name == name).collect();
    assert_eq!(found.len(), 1, "one sample of {name} expected: {found:?}");
    *found[0].1
}

fn request_id(response: &Response) -> String {
    let id = header(response, "x-request-id").unwrap_or_else(|| {
        panic!(
            "no X-Request-Id on {} {}",
            response.status(),
            response.url()
        )
    });
    assert!(!id.is_empty());
    id
}

/// Whether `id` is one the host made: 32 hex digits.
fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The log lines of the app (its standard error), once one holds `text`.
fn log_lines_once_they_hold(app: &TestApp, text: &str) -> Vec<String> {
    app.wait_for_output(text, LOG_DEADLINE)
        .lines()
        .filter_map(|line| line.strip_prefix("[stderr] "))
        .map(str::to_owned)
        .collect()
}

fn string(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
        .to_owned()
}

/// Notes the answer's request id in `ids`, and returns its JSON body (insisting on
/// `status`).
fn answer(ids: &mut Vec<String>, response: Response, status: u16) -> Value {
    ids.push(request_id(&response));
    json_body(response, status)
}

/// The access and refresh tokens of a token response.
fn token_pair(tokens: &Value) -> [String; 2] {
    ["access_token", "refresh_token"].map(|field| string(tokens, field))
}

/// The token of the password-reset mail to `email`, once it has come.
fn mailed_reset_token(sink: &SmtpSink, email: &str) -> String {
    let deadline = Instant::now() + MAIL_DEADLINE;
    loop {
        let reset = sink
            .mails_to(email)
            .into_iter()
            .find(|mail| mail.header("subject").as_deref() == Some("Reset your password"));
        if let Some(mail) = reset {
            return mail.token("/reset-password");
        }
        assert!(
            Instant::now() < deadline,
            "no reset mail to {email} within {MAIL_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each JSON log line, checked: an object with a level and fields; a line of a request
/// names its id in the `request` span.
fn json_log(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            let entry: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line:?}"));
            assert!(entry["level"].is_string(), "no level: {line}");
            assert!(entry["fields"].is_object(), "no fields: {line}");
            if let Some(span) = request_span(&entry) {
                assert!(
                    span["request_id"].as_str().is_some_and(|id| !id.is_empty()),
                    "a line of a request without its id: {line}"
                );
            }
            entry
        })
        .collect()
}

/// The `request` span of a JSON log entry, if the line belongs to a request.
fn request_span(entry: &Value) -> Option<&Value> {
    entry["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == "request")
}

/// The access-log entries (message `request`) by request id.
fn access_entries(log: &[Value]) -> BTreeMap<String, Value> {
    log.iter()
        .filter(|entry| entry["fields"]["message"] == "request")
        .filter_map(|entry| {
            let id = string(request_span(entry)?, "request_id");
            Some((id, entry.clone()))
        })
        .collect()
}

api_tests! {
    /// Without `PORTCULLIS_METRICS_TOKEN`, `/metrics` is an unknown path: the same 404
    /// as any other, whatever the Authorization header says.
    fn metrics_are_not_found_without_a_token() {
        let app = spawn_app();
        let unknown = app.get("/no-such-path");
        let unknown_headers = (header(&unknown, "cache-control"), header(&unknown, "x-content-type-options"));
        let unknown_body = assert_problem(unknown, 404, "not_found");
        for response in [app.get("/metrics"), app.get_with_token("/metrics", METRICS_TOKEN)] {
            request_id(&response);
            let headers = (header(&response, "cache-control"), header(&response, "x-content-type-options"));
            assert_eq!(headers, unknown_headers);
            assert_eq!(assert_problem(response, 404, "not_found"), unknown_body);
        }
    }

    /// With the token set, `/metrics` asks for it: 401 `unauthorized` without a bearer
    /// token, 401 `invalid_token` with another one (a user's access token too), 405 for
    /// other methods; the answers are problems like the component's.
    fn metrics_need_the_metrics_token() {
        let app = metrics_app(&[]);
        let (_, access_token, _) = app.registered_user();
        assert_problem(app.get("/metrics"), 401, "unauthorized");
        assert_problem(
            app.get_with_authorization("/metrics", &format!("Basic {METRICS_TOKEN}")),
            401,
            "unauthorized",
        );
        let wrong = format!("{METRICS_TOKEN}x");
        for token in [wrong.as_str(), &METRICS_TOKEN[1..], access_token.as_str()] {
            let response = app.get_with_token("/metrics", token);
            let www = header(&response, "www-authenticate").unwrap_or_default();
            assert!(www.contains(r#"error="invalid_token""#), "{www:?}");
            assert_problem(response, 401, "invalid_token");
        }
        let posted = app.request(Method::POST, "/metrics").send().expect("POST /metrics");
        assert_eq!(header(&posted, "allow").as_deref(), Some("GET"));
        assert_problem(posted, 405, "method_not_allowed");

        let lower_case_scheme = app.get_with_authorization("/metrics", &format!("bearer {METRICS_TOKEN}"));
        assert_eq!(lower_case_scheme.status().as_u16(), 200);
        assert_eq!(header(&lower_case_scheme, "cache-control").as_deref(), Some("no-store"));
    }

    /// After some requests the metrics count them by method, route template and
    /// status (never a raw path), time them, count logins by outcome, and show the
    /// instances and the database pool.
    fn metrics_count_requests_by_route_and_logins_by_outcome() {
        let app = metrics_app(&[]);
        let (user, access_token, first) = app.registered_user();
        let second = app.login_ok(&user.username, &user.password);
        assert_eq!(app.login(&user.username, "Wrong!Password1").status().as_u16(), 401);
        let other_session = string(&first, "session_id");
        let revoked = app
            .request(Method::DELETE, &format!("/api/v1/sessions/{other_session}"))
            .bearer_auth(string(&second, "access_token"))
            .send()
            .expect("revoke a session");
        assert_eq!(revoked.status().as_u16(), 204);
        assert_eq!(app.get("/no/such/path").status().as_u16(), 404);
        assert_eq!(app.get("/api/v1/auth/login").status().as_u16(), 405);

        let text = scrape(&app);
        assert!(!text.contains(&other_session), "a raw path reached a label:\n{text}");
        assert!(!text.contains(&access_token));
        for family in [
            "# TYPE portcullis_http_requests_total counter",
            "# TYPE portcullis_http_request_duration_seconds histogram",
            "# TYPE portcullis_logins_total counter",
            "# TYPE portcullis_instances_created_total counter",
            "# TYPE portcullis_instances_in_use gauge",
            "# TYPE portcullis_db_pool_connections gauge",
            "# TYPE portcullis_db_pool_idle_connections gauge",
            "# TYPE portcullis_db_pool_max_connections gauge",
        ] {
            assert!(text.contains(family), "{family:?} missing:\n{text}");
        }
        let samples = exposition(&text);
        let requests = |method, route, status| {
            value(&samples, "portcullis_http_requests_total", &[("method", method), ("route", route), ("status", status)])
        };
        assert_eq!(requests("POST", "/api/v1/auth/register", "201"), 1.0);
        assert_eq!(requests("POST", "/api/v1/auth/login", "200"), 1.0);
        assert_eq!(requests("POST", "/api/v1/auth/login", "401"), 1.0);
        assert_eq!(requests("GET", "/api/v1/auth/login", "405"), 1.0);
        assert_eq!(requests("DELETE", "/api/v1/sessions/{id}", "204"), 1.0);
        assert_eq!(requests("GET", "unmatched", "404"), 1.0);
        let logins = |outcome| value(&samples, "portcullis_logins_total", &[("endpoint", "login"), ("outcome", outcome)]);
        assert_eq!(logins("success"), 1.0);
        assert_eq!(logins("invalid_credentials"), 1.0);
        let login_latencies = value(
            &samples,
            "portcullis_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/api/v1/auth/login")],
        );
        assert_eq!(login_latencies, 2.0);
        let all_buckets = value(
            &samples,
            "portcullis_http_request_duration_seconds_bucket",
            &[("method", "POST"), ("route", "/api/v1/auth/login"), ("le", "+Inf")],
        );
        assert_eq!(all_buckets, 2.0);
        assert!(single(&samples, "portcullis_instances_created_total") >= 6.0);
        assert!(single(&samples, "portcullis_instances_max") >= 1.0);
        assert_eq!(single(&samples, "portcullis_db_pool_max_connections"), 8.0);
        let open = single(&samples, "portcullis_db_pool_connections");
        assert!((1.0..=8.0).contains(&open), "{open}");
        assert!(single(&samples, "portcullis_db_pool_idle_connections") <= open);

        // The scrape itself is counted by the next one.
        let again = exposition(&scrape(&app));
        let scrapes = value(&again, "portcullis_http_requests_total", &[("method", "GET"), ("route", "/metrics"), ("status", "200")]);
        assert_eq!(scrapes, 1.0);
    }

    /// Every answer carries an `X-Request-Id`, a new one per request: the component's
    /// answers (200, 404, 405), and the host's own (`/metrics`, 200 and 401). A
    /// well-formed id sent by the client is kept; any other is replaced.
    fn every_answer_carries_a_request_id() {
        let app = metrics_app(&[]);
        let answers = [
            app.get("/health"),
            app.get("/health"),
            app.get("/no-such-path"),
            app.get("/api/v1/auth/login"),
            app.get("/metrics"),
            app.get_with_token("/metrics", METRICS_TOKEN),
        ];
        let ids: Vec<_> = answers.iter().map(request_id).collect();
        assert!(ids.iter().all(|id| is_generated(id)), "{ids:?}");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "{ids:?}");

        let with_id = |id: &str| {
            app.request(Method::GET, "/health")
                .header("x-request-id", id)
                .send()
                .expect("GET /health")
        };
        assert_eq!(request_id(&with_id("edge-7f3a.b_C")), "edge-7f3a.b_C");
        for bad in ["has space", "semi;colon", &"a".repeat(65)] {
            assert!(is_generated(&request_id(&with_id(bad))), "{bad:?} was kept");
        }
    }

    /// In text format (the default) the access-log line of a request names its id,
    /// method, route template and status, never the raw path or the query.
    fn text_access_log_names_the_request() {
        let app = spawn_app();
        let (_, _, tokens) = app.registered_user();
        let session = string(&tokens, "session_id");
        let response = app.get(&format!("/api/v1/sessions/{session}?secret=q-s3cret"));
        let id = request_id(&response);
        let lines = log_lines_once_they_hold(&app, &id);
        let line = lines
            .iter()
            .find(|line| line.contains(&id) && line.contains("route="))
            .unwrap_or_else(|| panic!("no access-log line for {id}:\n{}", lines.join("\n")));
        for expected in ["request_id=", "method=GET", "route=", "/api/v1/sessions/{id}", "status=405", "duration_ms=", "client_ip=127.0.0.1"] {
            assert!(line.contains(expected), "{expected:?} not in {line:?}");
        }
        let output = app.output();
        assert!(!output.contains(&session), "the raw path was logged:\n{output}");
        assert!(!output.contains("q-s3cret"), "the query was logged:\n{output}");
    }

    /// With `PORTCULLIS_LOG_FORMAT=json` and everything logged down to `trace` (but the
    /// compiler), a whole
    /// account flow (register, login, verify, refresh, forgotten and reset password,
    /// metrics) writes only JSON lines; every line of a request names its id, every
    /// request has one access-log entry; and no password, token or reset token appears
    /// anywhere in the output.
    fn json_logs_name_each_request_and_hold_no_secret() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[
            ("PORTCULLIS_LOG", TRACE_ALL),
            ("PORTCULLIS_LOG_FORMAT", "json"),
            ("PORTCULLIS_METRICS_TOKEN", METRICS_TOKEN),
        ]);
        let mut ids = Vec::new();
        let mut secrets = vec![
            METRICS_TOKEN.to_owned(),
            NEW_PASSWORD.to_owned(),
            TEST_JWT_SECRET.to_owned(),
        ];

        let (user, _, registered) = app.registered_user();
        secrets.push(user.password.clone());
        secrets.extend(token_pair(&registered));
        let login = app.post_json("/api/v1/auth/login", &json!({"login": user.email, "password": user.password}));
        let login = answer(&mut ids, login, 200);
        let access_token = string(&login, "access_token");
        let refresh_token = string(&login, "refresh_token");
        answer(&mut ids, app.get_with_token("/api/v1/auth/verify", &access_token), 200);
        let with_query = app.get(&format!("/api/v1/validation-rules?access_token={access_token}"));
        answer(&mut ids, with_query, 200);
        let refreshed = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh_token}));
        secrets.extend(token_pair(&answer(&mut ids, refreshed, 200)));
        secrets.extend([access_token, refresh_token]);
        let forgot = app.post_json("/api/v1/auth/password/forgot", &json!({"email": user.email}));
        answer(&mut ids, forgot, 202);
        let reset_token = mailed_reset_token(&sink, &user.email);
        let reset = app.post_json("/api/v1/auth/password/reset", &json!({"token": reset_token, "new_password": NEW_PASSWORD}));
        ids.push(request_id(&reset));
        assert_eq!(reset.status().as_u16(), 204);
        secrets.push(reset_token);
        let relogin = app.post_json("/api/v1/auth/login", &json!({"login": user.username, "password": NEW_PASSWORD}));
        secrets.extend(token_pair(&answer(&mut ids, relogin, 200)));
        let metrics = app.get_with_token("/metrics", METRICS_TOKEN);
        assert_eq!(header(&metrics, "strict-transport-security").as_deref(), Some("max-age=31536000; includeSubDomains"));
        ids.push(request_id(&metrics));
        assert_eq!(metrics.status().as_u16(), 200);

        let last = ids.last().cloned().unwrap_or_default();
        let lines = log_lines_once_they_hold(&app, &format!(r#""request_id":"{last}""#));
        let log = json_log(&lines);
        let access = access_entries(&log);
        for id in &ids {
            let entry = access.get(id).unwrap_or_else(|| panic!("no access-log entry for {id}"));
            let fields = &entry["fields"];
            assert!(fields["route"].as_str().is_some_and(|route| route.starts_with('/')), "{entry}");
            assert!(fields["status"].is_u64() && fields["method"].is_string(), "{entry}");
            assert!(fields["duration_ms"].is_number() && fields["client_ip"] == "127.0.0.1", "{entry}");
        }
        let output = app.output();
        for secret in &secrets {
            if let Some(line) = output.lines().find(|line| line.contains(secret.as_str())) {
                let entry: Value = serde_json::from_str(line.trim_start_matches("[stderr] ")).unwrap_or_default();
                panic!(
                    "a secret ({} characters) is in the output, logged by {} ({})",
                    secret.len(),
                    entry["target"],
                    entry["fields"]["message"]
                );
            }
        }
    }
}
