//! The request body, read before the request takes an instance slot or an admission
//! turn, within a deadline.
//!
//! A client may send its body slowly, or announce one and never send it. Read by the
//! component, such a body would hold an instance slot (and, for a login, one of the few
//! password-hashing turns) for as long as the client likes. So the host reads the body
//! first: a body of at most [`PREREAD_LIMIT`] bytes (every body of the JSON endpoints,
//! with the default `PORTCULLIS_MAX_BODY_BYTES`) is read whole before the component
//! is involved; a longer one streams into the instance after its first
//! [`PREREAD_LIMIT`] bytes have arrived. Either way the whole body must arrive within
//! [`BODY_TIMEOUT`] of the request's head: a body still incomplete before the instance
//! starts is answered 408 by the host (see `server`); one that stops during streaming
//! ends in an error the component sees as a body cut short.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::CONTENT_LENGTH;
use tokio::time::{Instant, Sleep};

/// How long a request's body may take to arrive, from the moment its head was read.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most body bytes the host holds before the request goes to an instance.
pub const PREREAD_LIMIT: usize = 64 * 1024;

/// The body the component reads.
pub type RequestBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Why a body could not be read before the instance starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Unread {
    /// The body did not arrive within [`BODY_TIMEOUT`].
    TimedOut,
    /// The connection failed or the body's framing was broken.
    Broken,
}

/// Reads the body of `request` (up to [`PREREAD_LIMIT`] bytes) and returns the request
/// with a body that holds what was read and streams the rest, if any, until the
/// deadline.
pub async fn preread(request: Request<Incoming>) -> Result<Request<RequestBody>, Unread> {
    let deadline = Instant::now() + BODY_TIMEOUT;
    let (parts, mut incoming) = request.into_parts();
    if declared_length(&parts.headers).is_some_and(|length| length > PREREAD_LIMIT as u64) {
        let body = DeadlineBody::new(Bytes::new(), incoming, deadline);
        return Ok(Request::from_parts(parts, body.boxed_unsync()));
    }
    let mut read = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, incoming.frame())
            .await
            .map_err(|_| Unread::TimedOut)?;
        match frame {
            None => break,
            Some(Err(_)) => return Err(Unread::Broken),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
        }
        if read.len() > PREREAD_LIMIT {
            let body = DeadlineBody::new(Bytes::from(read), incoming, deadline);
            return Ok(Request::from_parts(parts, body.boxed_unsync()));
        }
    }
    let body = Full::new(Bytes::from(read)).map_err(|never| match never {});
    Ok(Request::from_parts(parts, body.boxed_unsync()))
}

/// The `Content-Length` of a request, when it has a readable one.
fn declared_length(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The bytes read already, then the rest of the body until the deadline, after which it
/// ends with `ConnectionReadTimeout`.
struct DeadlineBody {
    read: Option<Bytes>,
    rest: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(read: Bytes, rest: Incoming, deadline: Instant) -> Self {
        Self {
            read: Some(read).filter(|read| !read.is_empty()),
            rest,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(read) = this.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        if this.rest.is_end_stream() {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(context).is_ready() {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)));
        }
        Pin::new(&mut this.rest)
            .poll_frame(context)
            .map_err(wasmtime_wasi_http::Error::from)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.read.as_ref().map_or(0, |read| read.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}
