//! Any request through the component's HTTP entry point (`http::handle`): the router
//! (methods, paths, query strings), the headers it reads (authorization, content type,
//! origin, forwarded addresses) and the body of every endpoint, in a fresh world with a
//! signed-in user and admin (the input format and `$PLACEHOLDERS`: `fuzz/src/lib.rs`).
//! `x-fuzz-setting: key=value` lines vary the settings. Every answer is checked against
//! the conventions every answer keeps (`handle_and_check`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_fuzz::run_text_request(data);
});
