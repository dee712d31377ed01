//! Fair admission of the requests that hash a password.
//!
//! A login, a registration or a password change spends tens of milliseconds of CPU and
//! ~19 MiB of memory on Argon2id. Started all at once, a burst of them slows every
//! request down together and grows memory with the number of waiting clients. So they
//! run at most [`REQUESTS_PER_CORE`] per core, first come first served; the others wait
//! in a queue of at most `PORTCULLIS_HASH_QUEUE` requests, holding no instance and no
//! memory; past that they are answered 503 at once. Requests that hash nothing never
//! wait here. The hashes themselves run one per core (`hashing.rs`).
//!
//! Which requests hash is the component's knowledge, not the host's: its
//! `/openapi.json` marks those operations with `x-portcullis-hashes-password`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use hyper::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How many requests that hash run at once per core: two, so that one request's
/// database work and answer overlap another's hash (the hashes still take one core
/// each). Logins ran 3–16 % faster than with one per core (BENCHMARKS.md, issue #14).
pub const REQUESTS_PER_CORE: usize = 2;

/// The OpenAPI extension that marks an operation that hashes a password.
const HASHES_PASSWORD: &str = "x-portcullis-hashes-password";

/// The queue for the requests that hash a password.
pub struct Admission {
    /// The methods that hash, by route template.
    hashing: HashMap<String, Vec<Method>>,
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// The queue is full: the request is answered 503 without waiting.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

impl Admission {
    /// Reads the hashing operations from the component's OpenAPI `document`; at most
    /// `concurrency` of them run at once and `max_waiting` wait.
    pub fn from_openapi(
        document: &[u8],
        concurrency: usize,
        max_waiting: usize,
    ) -> anyhow::Result<Self> {
        let document: serde_json::Value =
            serde_json::from_slice(document).context("the OpenAPI document is not JSON")?;
        let paths = document["paths"]
            .as_object()
            .context("the OpenAPI document has no paths")?;
        let mut hashing: HashMap<String, Vec<Method>> = HashMap::new();
        for (template, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                if operation[HASHES_PASSWORD] == true {
                    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                        .with_context(|| format!("{template}: bad method {method:?}"))?;
                    hashing.entry(template.clone()).or_default().push(method);
                }
            }
        }
        Ok(Self {
            hashing,
            running: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        })
    }

    /// Whether a request with `method` to the route `template` hashes a password.
    pub fn hashes(&self, method: &Method, template: &str) -> bool {
        self.hashing
            .get(template)
            .is_some_and(|methods| methods.contains(method))
    }

    /// Waits for a turn to run (first come, first served); the turn ends when the permit
    /// drops. Fails at once when the queue is full. A request whose client goes away
    /// leaves the queue (its future is dropped).
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, QueueFull> {
        match Arc::clone(&self.running).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(QueueFull),
            Err(TryAcquireError::NoPermits) => {}
        }
        let _place = Waiting::join(&self.waiting, self.max_waiting)?;
        Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| QueueFull)
    }

    /// How many requests wait for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A place in the queue, given back when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn join(count: &'a AtomicUsize, max: usize) -> Result<Self, QueueFull> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < max).then_some(waiting + 1)
            })
            .map(|_| Self(count))
            .map_err(|_| QueueFull)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &[u8] = br#"{"openapi":"3.1.0","paths":{
        "/api/v1/auth/login":{"post":{"x-portcullis-hashes-password":true}},
        "/api/v1/users/me":{"get":{},"patch":{"x-portcullis-hashes-password":true}},
        "/health":{"get":{}}}}"#;

    #[test]
    fn the_marked_operations_hash() {
        let admission = Admission::from_openapi(DOCUMENT, 2, 4).unwrap();
        assert!(admission.hashes(&Method::POST, "/api/v1/auth/login"));
        assert!(admission.hashes(&Method::PATCH, "/api/v1/users/me"));
        assert!(!admission.hashes(&Method::GET, "/api/v1/users/me"));
        assert!(!admission.hashes(&Method::GET, "/health"));
    }

    #[tokio::test]
    async fn turns_are_bounded_and_a_full_queue_answers_at_once() {
        let admission = Arc::new(Admission::from_openapi(DOCUMENT, 1, 1).unwrap());
        let first = admission.admit().await.unwrap();
        let queued = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.admit().await.map(drop) }
        });
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.admit().await.err(), Some(QueueFull));
        drop(first);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert_eq!(admission.waiting(), 0);
        drop(admission.admit().await.unwrap());
    }

    #[tokio::test]
    async fn a_request_that_gives_up_leaves_the_queue() {
        let admission = Admission::from_openapi(DOCUMENT, 1, 1).unwrap();
        let _running = admission.admit().await.unwrap();
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), admission.admit());
        assert!(gave_up.await.is_err());
        assert_eq!(admission.waiting(), 0);
    }
}
