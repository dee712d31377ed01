//! The application's variables as `spin up` gives them to the component: the manifest's
//! `[variables]` with their defaults (a `required` one must be given), set from the
//! environment, and the component's `[component.<id>.variables]`, whose
//! `"{{ name }}"` templates name an application variable. The Spin test host reads a
//! variable `name` from `PORTCULLIS_<NAME>` (the native host's name for the same
//! setting), where Spin reads `SPIN_VARIABLE_<NAME>`.

use std::collections::HashMap;

/// The component's variables, by the manifest `manifest` (the text of a `spin.toml`)
/// and `given`, the application variables set from outside, by name.
pub fn component_variables(
    manifest: &str,
    component: &str,
    given: &HashMap<String, String>,
) -> Result<HashMap<String, String>, String> {
    let manifest: toml::Table = manifest
        .parse()
        .map_err(|error| format!("spin.toml: {error}"))?;
    let application = application_variables(&manifest, given)?;
    let templates = manifest
        .get("component")
        .and_then(|components| components.get(component))
        .and_then(|component| component.get("variables"))
        .and_then(toml::Value::as_table)
        .ok_or_else(|| format!("spin.toml: no [component.{component}.variables]"))?;
    templates
        .iter()
        .map(|(name, template)| {
            let template = template
                .as_str()
                .ok_or_else(|| format!("spin.toml: component variable {name} is not a string"))?;
            Ok((name.clone(), expand(template, &application)?))
        })
        .collect()
}

/// Every `[variables]` entry: given, or its default.
fn application_variables(
    manifest: &toml::Table,
    given: &HashMap<String, String>,
) -> Result<HashMap<String, String>, String> {
    let Some(declared) = manifest.get("variables").and_then(toml::Value::as_table) else {
        return Ok(HashMap::new());
    };
    declared
        .iter()
        .map(|(name, declaration)| {
            let default = declaration.get("default").and_then(toml::Value::as_str);
            let value = given
                .get(name)
                .map(String::as_str)
                .or(default)
                .ok_or_else(|| {
                    format!(
                        "the variable {name} is required: set PORTCULLIS_{}",
                        name.to_ascii_uppercase()
                    )
                })?;
            Ok((name.clone(), value.to_owned()))
        })
        .collect()
}

/// A component variable's value: `{{ name }}` replaced by the application variable.
fn expand(template: &str, application: &HashMap<String, String>) -> Result<String, String> {
    let mut expanded = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("spin.toml: unclosed template in {template:?}"))?;
        let name = after[..end].trim();
        let value = application
            .get(name)
            .ok_or_else(|| format!("spin.toml: {template:?} names no variable"))?;
        expanded.push_str(value);
        rest = &after[end + 2..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

/// The application variables the environment sets: `PORTCULLIS_<NAME>` as `name`.
pub fn from_environment(
    environment: impl Iterator<Item = (String, String)>,
) -> HashMap<String, String> {
    environment
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("PORTCULLIS_")?;
            Some((name.to_ascii_lowercase(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
        [variables]
        jwt_secret = { required = true, secret = true }
        rate_limit = { default = "10/60" }
        public_url = { default = "http://127.0.0.1:3000" }

        [component.portcullis.variables]
        jwt_secret = "{{ jwt_secret }}"
        rate_limit = "{{rate_limit}}"
        public_url = "at {{ public_url }}/"
    "#;

    fn given(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn given_values_win_over_defaults_and_templates_are_expanded() {
        let variables = component_variables(
            MANIFEST,
            "portcullis",
            &given(&[("jwt_secret", "s3cret"), ("rate_limit", "off")]),
        )
        .unwrap();
        assert_eq!(
            variables,
            given(&[
                ("jwt_secret", "s3cret"),
                ("rate_limit", "off"),
                ("public_url", "at http://127.0.0.1:3000/"),
            ])
        );
    }

    #[test]
    fn a_required_variable_must_be_given_and_undeclared_ones_are_ignored() {
        let missing = component_variables(MANIFEST, "portcullis", &given(&[("hash_queue", "9")]));
        assert_eq!(
            missing.unwrap_err(),
            "the variable jwt_secret is required: set PORTCULLIS_JWT_SECRET"
        );
        let variables = component_variables(
            MANIFEST,
            "portcullis",
            &given(&[("jwt_secret", "s"), ("hash_queue", "9")]),
        )
        .unwrap();
        assert!(!variables.contains_key("hash_queue"), "{variables:?}");
    }

    #[test]
    fn the_environment_gives_portcullis_variables_by_their_lower_case_name() {
        let environment = [
            ("PORTCULLIS_JWT_SECRET".to_owned(), "s".to_owned()),
            ("SPIN_VARIABLE_RATE_LIMIT".to_owned(), "off".to_owned()),
        ];
        assert_eq!(
            from_environment(environment.into_iter()),
            given(&[("jwt_secret", "s")])
        );
    }
}
