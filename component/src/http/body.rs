//! Reading JSON request bodies: the content type, the size limit, the syntax, and typed
//! fields. A field of the wrong JSON type is a field error, not a parse failure.

use serde_json::{Map, Value};

use super::{Body, Request, header};
use crate::account::Change;
use crate::error::{Error, FieldError};

/// A parsed JSON object body.
pub struct JsonObject {
    map: Map<String, Value>,
    /// Fields present with a JSON type other than the one expected.
    pub type_errors: Vec<FieldError>,
}

/// Checks size, content type and syntax; the body must be a JSON object.
pub fn json_object(request: &Request, limit: usize) -> Result<JsonObject, Error> {
    let bytes = match &request.body {
        Body::TooLarge => return Err(Error::PayloadTooLarge { limit }),
        Body::Complete(bytes) => bytes,
    };
    if !is_json_content_type(request.header(header::CONTENT_TYPE)) {
        return Err(Error::UnsupportedMediaType);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(JsonObject {
            map,
            type_errors: Vec::new(),
        }),
        Ok(_) => Err(Error::InvalidJson("the body must be a JSON object".into())),
        Err(error) => Err(Error::InvalidJson(describe(&error))),
    }
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json_content_type(value: Option<&str>) -> bool {
    is_media_type(value, "application/json")
}

/// The bytes of a JSON Lines body (`application/x-ndjson`, API.md §9), after the size
/// and content-type checks; the lines are read one by one by the caller.
pub fn ndjson_body(request: &Request, limit: usize) -> Result<&[u8], Error> {
    let bytes = match &request.body {
        Body::TooLarge => return Err(Error::PayloadTooLarge { limit }),
        Body::Complete(bytes) => bytes,
    };
    if !is_media_type(request.header(header::CONTENT_TYPE), "application/x-ndjson") {
        return Err(Error::UnsupportedMediaType);
    }
    Ok(bytes)
}

/// True when the `Content-Type` value names `expected`, with or without parameters.
fn is_media_type(value: Option<&str>, expected: &str) -> bool {
    value
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(expected))
}

/// Where the JSON broke, without echoing the body.
fn describe(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Eof => "it ends too early",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data | serde_json::error::Category::Io => "unreadable data",
    };
    format!(
        "{what} at line {}, column {}.",
        error.line(),
        error.column()
    )
}

impl JsonObject {
    /// A string field; absent or `null` gives `None`. Another type records an
    /// `invalid_format` error for the field.
    pub fn string(&mut self, field: &'static str) -> Option<String> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => {
                self.type_errors.push(FieldError::new(
                    field,
                    "invalid_format",
                    "Must be a string.",
                ));
                None
            }
        }
    }

    /// A boolean field; absent or `null` gives `None`. Another type records an
    /// `invalid_format` error for the field.
    pub fn boolean(&mut self, field: &'static str) -> Option<bool> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(flag)) => Some(*flag),
            Some(_) => {
                self.type_errors.push(FieldError::new(
                    field,
                    "invalid_format",
                    "Must be true or false.",
                ));
                None
            }
        }
    }

    /// A field of a PATCH: absent keeps, `null` clears, a string sets. Another type
    /// records an `invalid_format` error and keeps.
    pub fn change(&mut self, field: &'static str) -> Change {
        match self.map.get(field) {
            None => Change::Keep,
            Some(Value::Null) => Change::Clear,
            Some(Value::String(text)) => Change::Set(text.clone()),
            Some(_) => {
                self.type_errors.push(FieldError::new(
                    field,
                    "invalid_format",
                    "Must be a string.",
                ));
                Change::Keep
            }
        }
    }

    /// Fails with every type error found so far.
    pub fn check_types(&self) -> Result<(), Error> {
        if self.type_errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.type_errors.clone()))
        }
    }

    /// A string field that must be present and non-empty.
    pub fn required(&mut self, field: &'static str) -> Result<String, Error> {
        let value = self.string(field).unwrap_or_default();
        self.check_types()?;
        if value.is_empty() {
            return Err(Error::Validation(vec![FieldError::new(
                field,
                "required",
                format!("{field} is required."),
            )]));
        }
        Ok(value)
    }

    /// True when `field` had the wrong JSON type.
    pub fn is_mistyped(&self, field: &str) -> bool {
        self.type_errors.iter().any(|error| error.field == field)
    }
}
