//! The HTTP API of API.md §2–§5 over plain request and response values: the wasm glue
//! turns `wasi:http` into a [`Request`] and a [`Response`] back, so everything here is
//! tested natively.

use std::net::{IpAddr, SocketAddr};

mod body;
mod cookies;
mod cors;
mod docs;
mod handlers;
mod mfa;
mod model;
mod oauth;
mod openapi;
mod pages;
mod problem;
mod router;

pub use router::{body_limit, handle};

/// The problem answer for an error that happened before routing (e.g. bad settings).
pub fn error_response(error: &crate::error::Error) -> Response {
    problem::problem(error)
}

/// Request-header names this service reads, lower-case.
pub mod header {
    pub const AUTHORIZATION: &str = "authorization";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const USER_AGENT: &str = "user-agent";
    /// The client's address, set by the host (the native host and Spin overwrite any
    /// value a client sends).
    pub const CLIENT_ADDR: &str = "spin-client-addr";
    pub const FORWARDED_FOR: &str = "x-forwarded-for";
    pub const ORIGIN: &str = "origin";
    pub const PREFLIGHT_METHOD: &str = "access-control-request-method";
}

/// A request, with its body already read (at most `max_body_bytes`).
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names lower-case; values as text (invalid UTF-8 is replaced).
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// The request body as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Complete(Vec<u8>),
    /// Longer than the configured limit; the rest was not read.
    TooLarge,
}

impl Default for Body {
    fn default() -> Self {
        Body::Complete(Vec::new())
    }
}

impl Request {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A query-string parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The client's IP address: the peer the host reported (`ip:port` or `ip`), or, when
    /// that peer is a trusted proxy, the right-most address of `X-Forwarded-For` that is
    /// not itself a trusted proxy.
    pub fn client_ip(&self, trusted_proxies: &[ipnet::IpNet]) -> Option<String> {
        let peer = parse_ip(self.header(header::CLIENT_ADDR)?)?;
        let is_trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
        if !is_trusted(&peer) {
            return Some(peer.to_string());
        }
        let forwarded: Vec<IpAddr> = self
            .headers
            .iter()
            .filter(|(name, _)| name == header::FORWARDED_FOR)
            .flat_map(|(_, value)| value.split(','))
            .filter_map(parse_ip)
            .collect();
        let client = forwarded
            .iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or(forwarded.first())
            .unwrap_or(&peer);
        Some(client.to_string())
    }
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// The answer when a body cannot be serialised (which our types rule out).
const UNSERIALISABLE: &str = r#"{"type":"urn:portcullis:problem:internal","title":"Internal server error","status":500,"detail":"An internal error occurred.","code":"internal"}"#;

/// A response ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        Response::serialized(status, "application/json", value)
    }

    /// A response whose body is `value` as JSON, of the media type given. Our bodies
    /// always serialise; should one not, the answer is a fixed 500 problem.
    pub fn serialized(status: u16, media_type: &str, value: &impl serde::Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                headers: vec![("content-type".into(), media_type.into())],
                body,
            },
            Err(_) => Response {
                status: 500,
                headers: vec![("content-type".into(), problem::PROBLEM_JSON.into())],
                body: UNSERIALISABLE.as_bytes().to_vec(),
            },
        }
    }

    /// A response without a body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests;
