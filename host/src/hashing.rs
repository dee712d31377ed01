//! `portcullis:auth/password-hashing` (`wit/hashing.wit`) for the component: the Argon2
//! kernel of `hasher/`, run natively (AVX2 when the CPU has it) on tokio's blocking pool,
//! so that a hash never stalls the threads that serve other requests. The component keeps
//! every rule (parameters, salt, encoding, comparison); how many hashes run at once is
//! the admission queue's business (`admission.rs`: one per core).

use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package portcullis:host-hashing;

            world hashing-host {
                import portcullis:auth/password-hashing@0.1.0;
            }
        ",
        imports: { default: async },
    });
}

use bindings::portcullis::auth::password_hashing as wit;

/// The kernel as the generated host functions see it (it holds no state).
pub struct Kernel;

impl wit::Host for Kernel {
    async fn argon2(
        &mut self,
        password: Vec<u8>,
        salt: Vec<u8>,
        params: wit::Argon2Params,
    ) -> Result<Vec<u8>, String> {
        let params = native_params(params);
        tokio::task::spawn_blocking(move || portcullis_hasher::argon2(&password, &salt, &params))
            .await
            .unwrap_or_else(|error| Err(format!("the hashing task ended early: {error}")))
    }
}

fn native_params(params: wit::Argon2Params) -> portcullis_hasher::Argon2Params {
    let variant = match params.algorithm {
        wit::Argon2Variant::Argon2i => portcullis_hasher::Variant::Argon2i,
        wit::Argon2Variant::Argon2id => portcullis_hasher::Variant::Argon2id,
    };
    portcullis_hasher::Argon2Params {
        variant,
        version: params.version,
        memory_kib: params.memory_kib,
        iterations: params.iterations,
        parallelism: params.parallelism,
        output_len: params.output_len,
    }
}

struct HasKernel;

impl HasData for HasKernel {
    type Data<'a> = Kernel;
}

/// Adds `portcullis:auth/password-hashing` to `linker`.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasKernel>(linker, |_| Kernel)
}
