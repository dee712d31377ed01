//! Refresh, email-verification and password-reset tokens: the input picks a kind and
//! gives a token (`$USER_REFRESH`, `$VERIFY_TOKEN`, `$RESET_TOKEN` stand for the live
//! ones the world holds), which goes to the component's own functions (`refresh::refresh`,
//! `account::verify_email`, `account::reset_password` and the pages' liveness checks).
//! Asserted: a token is accepted exactly when it is the live one, byte for byte, and an
//! opaque token decodes only from its one canonical text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_component::{account, refresh, tokens};
use portcullis_fuzz::{client, in_world};

/// A new password the reset accepts (complex, not common, without the identifiers).
const NEW_PASSWORD: &str = "N3w!Quartz#Lantern";

fuzz_target!(|data: &[u8]| {
    let Some((&kind, token)) = data.split_first() else {
        return;
    };
    in_world(&[], |world, fixtures| {
        let token = String::from_utf8_lossy(&fixtures.substitute(token)).into_owned();
        if let Some(bytes) = tokens::decode_opaque(&token) {
            assert_eq!(tokens::encode_opaque(&bytes), token, "one text per token");
        }
        let app = world.app();
        let client = client();
        let is = |live: &Option<String>| live.as_deref() == Some(token.as_str());
        match kind % 5 {
            0 => {
                let outcome = refresh::refresh(&app, &token, &client);
                assert_eq!(outcome.is_ok(), is(&fixtures.user_refresh), "{outcome:?}");
            }
            1 => {
                let outcome = account::verify_email(&app, &token, &client);
                assert_eq!(outcome.is_ok(), is(&fixtures.verify_token), "{outcome:?}");
            }
            2 => {
                let outcome = account::reset_password(&app, &token, NEW_PASSWORD, &client);
                assert_eq!(outcome.is_ok(), is(&fixtures.reset_token), "{outcome:?}");
            }
            3 => {
                let live = account::verification_token_is_live(&app, &token);
                assert_eq!(live, Ok(is(&fixtures.verify_token)));
            }
            _ => {
                let live = account::reset_token_is_live(&app, &token);
                assert_eq!(live, Ok(is(&fixtures.reset_token)));
            }
        }
    })
    .expect("the default settings are valid");
});
