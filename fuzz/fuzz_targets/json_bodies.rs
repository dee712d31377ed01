//! The body of every endpoint that reads one (`BODY_ENDPOINTS`: JSON, and JSON Lines for
//! the user import), sent with its content type and, where it needs one, the signed-in
//! user's or admin's token: the first byte picks the endpoint, the rest is the body
//! (`$PLACEHOLDERS` in it stand for the world's ids and tokens).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{BODY_ENDPOINTS, endpoint_request, run_text_request};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let index = usize::from(selector) % BODY_ENDPOINTS.len();
    let content_type = if BODY_ENDPOINTS[index].1.ends_with("/import") {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    run_text_request(&endpoint_request(index, content_type, body));
});
