//! `portcullis:auth/password-hashing` (`wit/hashing.wit`) for the component: the Argon2
//! kernel of `hasher/`, run natively (AVX2 when the CPU has it) on tokio's blocking pool,
//! so that a hash never stalls the threads that serve other requests. The component keeps
//! every rule (parameters, salt, encoding, comparison).
//!
//! At most one hash per core runs at once ([`HashingSlots`]): the admission queue lets
//! two hashing requests per core in (`admission.rs`), so that one's database work
//! overlaps another's hash, and the slots keep their hashes from sharing a core.

use std::sync::Arc;

use tokio::sync::Semaphore;
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

/// One slot per core for the hashes of every instance; cheap to clone.
#[derive(Clone)]
pub struct HashingSlots(Arc<Semaphore>);

impl HashingSlots {
    /// As many slots as the process may use cores.
    pub fn one_per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        Self(Arc::new(Semaphore::new(cores)))
    }
}

/// The kernel as the generated host functions see it: the shared slots.
pub struct Kernel<'a> {
    slots: &'a HashingSlots,
}

impl<'a> Kernel<'a> {
    /// The kernel for one instance, hashing within `slots`.
    pub fn new(slots: &'a HashingSlots) -> Self {
        Self { slots }
    }
}

impl wit::Host for Kernel<'_> {
    async fn argon2(
        &mut self,
        password: Vec<u8>,
        salt: Vec<u8>,
        params: wit::Argon2Params,
    ) -> Result<Vec<u8>, String> {
        let params = native_params(params);
        let _slot = self
            .slots
            .0
            .acquire()
            .await
            .map_err(|_| "the hashing slots are closed".to_owned())?;
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
    type Data<'a> = Kernel<'a>;
}

/// Adds `portcullis:auth/password-hashing` to `linker`, served by the kernel `get_kernel`
/// returns.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get_kernel: fn(&mut T) -> Kernel<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasKernel>(linker, get_kernel)
}
