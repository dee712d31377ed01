//! The request id: every request gets one, every answer carries it in `X-Request-Id`,
//! the component sees it in the same request header, and every log line of the request
//! names it (see `server`).
//!
//! A client (or a proxy in front) may send its own `X-Request-Id` to follow a request
//! across services: it is kept when it is 1 to 64 characters of `A-Z a-z 0-9 . _ -`,
//! so it cannot forge log lines or carry anything long. Otherwise, or when there is
//! none, the host makes one: 128 random bits as 32 hex digits.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The header, in requests and answers.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent id that is kept.
const MAX_LENGTH: usize = 64;

/// The id of the request with `headers`, which now carry exactly that one id.
pub fn assign(headers: &mut HeaderMap) -> HeaderValue {
    let id = acceptable(headers).unwrap_or_else(generate);
    headers.insert(HEADER, id.clone());
    id
}

/// The client's id, if it sent exactly one and it is acceptable.
fn acceptable(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut sent = headers.get_all(HEADER).iter();
    let id = sent.next()?;
    let single = sent.next().is_none();
    let bytes = id.as_bytes();
    let well_formed = (1..=MAX_LENGTH).contains(&bytes.len())
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    (single && well_formed).then(|| id.clone())
}

/// A fresh id: 128 random bits, 32 lower-case hex digits.
fn generate() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    // Hex digits are always a valid header value.
    HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(sent: &[&'static str]) -> String {
        let mut headers = HeaderMap::new();
        for value in sent {
            headers.append(HEADER, HeaderValue::from_static(value));
        }
        let id = assign(&mut headers);
        let values: Vec<_> = headers.get_all(HEADER).iter().collect();
        assert_eq!(values, [&id]);
        id.to_str().unwrap().to_owned()
    }

    fn is_generated(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[test]
    fn a_well_formed_client_id_is_kept() {
        assert_eq!(assigned(&["trace-42.a_B"]), "trace-42.a_B");
        let longest = "a".repeat(64);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::try_from(longest.as_str()).unwrap());
        assert_eq!(assign(&mut headers), longest.as_str());
    }

    #[test]
    fn other_ids_are_replaced() {
        for sent in [&["has space"][..], &["x;y"], &[""], &["a", "b"]] {
            assert!(is_generated(&assigned(sent)), "{sent:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::try_from("a".repeat(65)).unwrap());
        assert!(is_generated(assign(&mut headers).to_str().unwrap()));
    }

    #[test]
    fn generated_ids_differ() {
        let (first, second) = (assigned(&[]), assigned(&[]));
        assert!(is_generated(&first) && is_generated(&second));
        assert_ne!(first, second);
    }
}
