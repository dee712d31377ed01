//! `GET /health` and `GET /api/v1/validation-rules`.

use serde_json::Value;

use crate::support::{TestApp, header, json_body, spawn_app};

/// Every (dotted lower-case path, leaf value) of a JSON document. The contract does not fix
/// the shape of `/api/v1/validation-rules`, so its checks look for a path that mentions the
/// setting and holds the expected value.
fn leaves(v: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}.{}", k.to_ascii_lowercase()), v, out);
                }
            }
            Value::Array(a) => {
                for v in a {
                    walk(prefix, v, out);
                }
            }
            leaf => out.push((prefix.to_string(), leaf.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// The leaf values whose path contains every word of `words`.
fn values_at(doc: &Value, words: &[&str]) -> Vec<Value> {
    leaves(doc)
        .into_iter()
        .filter(|(path, _)| words.iter().all(|w| path.contains(w)))
        .map(|(_, v)| v)
        .collect()
}

fn assert_rule(doc: &Value, words: &[&str], expected: Value) {
    let found = values_at(doc, words);
    assert!(
        found.contains(&expected),
        "validation-rules should give {expected} under a key mentioning {words:?}; found {found:?} in {doc}"
    );
}

fn assert_rule_absent(doc: &Value, words: &[&str], unexpected: Value) {
    let found = values_at(doc, words);
    assert!(
        !found.contains(&unexpected),
        "validation-rules still gives {unexpected} under {words:?}: {doc}"
    );
}

fn rules(app: &TestApp) -> Value {
    let resp = app.get("/api/v1/validation-rules");
    assert!(
        header(&resp, "content-type").is_some_and(|c| c.starts_with("application/json")),
        "validation-rules must be application/json"
    );
    let body = json_body(resp, 200);
    assert!(body.is_object(), "{body}");
    body
}

api_tests! {
    fn health_answers_ok_with_database_and_version() {
        let app = spawn_app();
        let body = json_body(app.get("/health"), 200);
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(body["database"], "ok", "{body}");
        let version = body["version"]
            .as_str()
            .unwrap_or_else(|| panic!("version must be a string: {body}"));
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "version should look like a version number, got {version:?}"
        );
    }

    fn health_is_stable_across_requests() {
        let app = spawn_app();
        let first = json_body(app.get("/health"), 200);
        for _ in 0..5 {
            let again = json_body(app.get("/health"), 200);
            assert_eq!(first, again);
        }
    }

    fn validation_rules_describe_the_defaults() {
        let app = spawn_app();
        let doc = rules(&app);
        assert_rule(&doc, &["password", "min"], Value::from(8));
        assert_rule(&doc, &["password", "max"], Value::from(128));
        assert_rule(&doc, &["password"], Value::from("complex"));
        assert_rule(&doc, &["username", "min"], Value::from(3));
        assert_rule(&doc, &["username", "max"], Value::from(50));
        assert_rule(&doc, &["email", "max"], Value::from(254));
        assert_rule(&doc, &["access"], Value::from(900));
        assert_rule(&doc, &["refresh"], Value::from(604_800));
        assert_rule(&doc, &["session"], Value::from(2));
        // The mobile rule may be given as numbers or as a pattern such as `\+?[0-9]{10,15}`.
        let mobile_as_numbers = values_at(&doc, &["mobile", "min"]).contains(&Value::from(10))
            && values_at(&doc, &["mobile", "max"]).contains(&Value::from(15));
        let mobile_as_pattern = values_at(&doc, &["mobile"])
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.contains("{10,15}")));
        assert!(
            mobile_as_numbers || mobile_as_pattern,
            "validation-rules should describe 10-15 digit mobile numbers: {doc}"
        );
        let text = doc.to_string();
        assert!(
            text.contains("evict_oldest"),
            "the session limit policy should be described: {doc}"
        );
    }

    fn validation_rules_reflect_the_live_settings() {
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_PASSWORD_MIN_LENGTH", "12"),
            ("PORTCULLIS_PASSWORD_POLICY", "nist"),
            ("PORTCULLIS_ACCESS_TTL", "600"),
            ("PORTCULLIS_REFRESH_TTL", "86400"),
            ("PORTCULLIS_MAX_SESSIONS", "5"),
            ("PORTCULLIS_SESSION_LIMIT_POLICY", "reject"),
        ]);
        let doc = rules(&app);
        assert_rule(&doc, &["password", "min"], Value::from(12));
        assert_rule_absent(&doc, &["password", "min"], Value::from(8));
        assert_rule(&doc, &["password", "max"], Value::from(128));
        assert_rule(&doc, &["password"], Value::from("nist"));
        assert_rule_absent(&doc, &["password"], Value::from("complex"));
        assert_rule(&doc, &["access"], Value::from(600));
        assert_rule_absent(&doc, &["access"], Value::from(900));
        assert_rule(&doc, &["refresh"], Value::from(86_400));
        assert_rule(&doc, &["session"], Value::from(5));
        assert!(doc.to_string().contains("reject"), "{doc}");
    }
}
