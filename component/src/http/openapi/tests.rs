//! The document is complete and consistent: every route and method of the table is
//! described under its own pattern, every `$ref` resolves, and request bounds are the
//! ones the code enforces.

use serde_json::Value;

use super::{document, router};
use crate::settings::PASSWORD_MAX_LENGTH;
use crate::validation::{EMAIL_MAX, USERNAME_MAX, USERNAME_MIN};

fn json() -> Value {
    let document = document().expect("every description names its route's pattern");
    serde_json::from_str(&document.to_json().expect("serialisable")).expect("JSON")
}

#[test]
fn every_route_and_method_is_described_under_its_pattern() {
    let json = json();
    assert_eq!(json["openapi"], "3.1.0");
    let paths = json["paths"].as_object().expect("paths");
    let mut expected = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (pattern, method, describe) in router::endpoints() {
        let description = describe();
        let methods: Vec<Value> = description
            .methods
            .iter()
            .map(|method| serde_json::to_value(method).expect("a method"))
            .collect();
        assert_eq!(methods, vec![Value::from(method.to_lowercase())]);
        let operation = &paths[pattern][method.to_lowercase()];
        assert!(operation.is_object(), "{method} {pattern} is not described");
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(ids.insert(id), "{method} {pattern}: duplicate operationId");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty())
        );
        expected += 1;
    }
    let described: usize = paths
        .values()
        .filter(|item| item.get("x-portcullis-served-by").is_none())
        .map(|item| item.as_object().map_or(0, |item| item.len()))
        .sum();
    assert_eq!(
        described, expected,
        "the document describes routes the table lacks"
    );
    assert_eq!(paths["/metrics"]["x-portcullis-served-by"], "host");
}

/// Collects every `$ref` of `value`.
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

#[test]
fn every_reference_resolves() {
    let json = json();
    let mut found = Vec::new();
    references(&json, &mut found);
    assert!(found.len() > 20);
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .expect("a schema reference");
        assert!(
            json["components"]["schemas"][name].is_object(),
            "{reference} does not resolve"
        );
    }
}

#[test]
fn request_bounds_are_the_enforced_ones() {
    let json = json();
    let schemas = &json["components"]["schemas"];
    let username = &schemas["RegisterRequest"]["properties"]["username"];
    assert_eq!(username["minLength"], USERNAME_MIN);
    assert_eq!(username["maxLength"], USERNAME_MAX);
    let email = &schemas["RegisterRequest"]["properties"]["email"];
    assert_eq!(email["maxLength"], EMAIL_MAX);
    for (schema, field) in [
        ("RegisterRequest", "password"),
        ("ResetPasswordRequest", "new_password"),
        ("ChangePasswordRequest", "new_password"),
        ("ResetPasswordForm", "new_password"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["maxLength"], PASSWORD_MAX_LENGTH,
            "{schema}.{field}"
        );
    }
    let profile = &schemas["ProfileUpdate"]["properties"];
    assert_eq!(profile["username"]["maxLength"], USERNAME_MAX);
    assert_eq!(profile["email"]["maxLength"], EMAIL_MAX);
}

#[test]
fn errors_are_problems_and_the_password_flow_is_offered() {
    let json = json();
    let register = &json["paths"]["/api/v1/auth/register"]["post"]["responses"];
    for status in ["400", "409", "413", "415", "422", "429", "503"] {
        let content = &register[status]["content"]["application/problem+json"];
        assert_eq!(
            content["schema"]["$ref"], "#/components/schemas/Problem",
            "{status}"
        );
    }
    let me = &json["paths"]["/api/v1/users/me"]["get"];
    assert!(me["responses"]["401"].is_object());
    let flow = &json["components"]["securitySchemes"]["oauth2"]["flows"]["password"];
    assert_eq!(flow["tokenUrl"], "/api/v1/auth/token");
    let description = json["info"]["description"].as_str().unwrap_or_default();
    assert!(description.contains("refresh_token_reused"));
}
