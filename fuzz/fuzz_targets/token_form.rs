//! The form body of `POST /api/v1/auth/token` (OAuth2 `password` and `refresh_token`
//! grants): the input is the body, sent as `application/x-www-form-urlencoded`
//! (`$USER_REFRESH` stands for the signed-in user's refresh token).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let mut request =
        b"POST /api/v1/auth/token\ncontent-type: application/x-www-form-urlencoded\n\n".to_vec();
    request.extend_from_slice(body);
    portcullis_fuzz::run_text_request(&request);
});
