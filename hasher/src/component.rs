//! The kernel as a wasm component: exports `portcullis:auth/password-hashing`.

wit_bindgen::generate!({
    path: "../wit",
    inline: "
        package portcullis:hasher;

        world hasher {
            export portcullis:auth/password-hashing@0.1.0;
        }
    ",
    // wasi:cli 0.2.12 (parsed with the rest of `wit/`) names an interface behind this
    // gate; the kernel imports nothing.
    features: ["clocks-timezone"],
    generate_all,
});

use exports::portcullis::auth::password_hashing::{Argon2Params, Argon2Variant, Guest};

struct Kernel;

impl Guest for Kernel {
    fn argon2(password: Vec<u8>, salt: Vec<u8>, params: Argon2Params) -> Result<Vec<u8>, String> {
        let variant = match params.algorithm {
            Argon2Variant::Argon2i => crate::Variant::Argon2i,
            Argon2Variant::Argon2id => crate::Variant::Argon2id,
        };
        crate::argon2(
            &password,
            &salt,
            &crate::Argon2Params {
                variant,
                version: params.version,
                memory_kib: params.memory_kib,
                iterations: params.iterations,
                parallelism: params.parallelism,
                output_len: params.output_len,
            },
        )
    }
}

export!(Kernel);
