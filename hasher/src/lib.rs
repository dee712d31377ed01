//! The Argon2 kernel of `portcullis:auth/password-hashing` (`wit/hashing.wit`): the raw
//! Argon2 hash of a password and a salt with given parameters, by RustCrypto's `argon2`.
//!
//! One function, three users: the native host calls [`argon2`] for the component (with
//! AVX2 when the CPU has it), the component's native tests call it as their host, and
//! built for wasm32-wasip2 this crate is a component exporting the interface, which
//! `spin/compose` plugs into the Spin artifact and the portable component.
//!
//! The bounds below are the kernel's own, wider than the component's (which decides what
//! it accepts): no caller can make one computation take more memory or time than this.

#[cfg(target_arch = "wasm32")]
mod component;

use std::sync::{Mutex, PoisonError};

use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The most memory one computation may use, in KiB (128 MiB).
pub const MAX_MEMORY_KIB: u32 = 131_072;
/// The most passes one computation may make.
pub const MAX_ITERATIONS: u32 = 16;
/// The most lanes one computation may have.
pub const MAX_PARALLELISM: u32 = 16;
/// The longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 4096;
/// The salt's length bounds, in bytes.
pub const SALT_BYTES: std::ops::RangeInclusive<usize> = 8..=64;
/// The hash's length bounds, in bytes.
pub const OUTPUT_BYTES: std::ops::RangeInclusive<u32> = 16..=64;

/// The Argon2 variants the kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Argon2i,
    Argon2id,
}

/// The parameters of one computation (RFC 9106).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    pub variant: Variant,
    /// `16` (0x10) or `19` (0x13).
    pub version: u32,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub output_len: u32,
}

/// The raw Argon2 hash of `password` with `salt`, or why the parameters are refused.
/// Error messages name the parameter, never the password.
pub fn argon2(password: &[u8], salt: &[u8], params: &Argon2Params) -> Result<Vec<u8>, String> {
    check_bounds(password, salt, params)?;
    let version = match params.version {
        0x10 => Version::V0x10,
        0x13 => Version::V0x13,
        other => return Err(format!("unsupported Argon2 version {other}")),
    };
    let algorithm = match params.variant {
        Variant::Argon2i => Algorithm::Argon2i,
        Variant::Argon2id => Algorithm::Argon2id,
    };
    let output_len = params.output_len as usize;
    let argon2_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(output_len),
    )
    .map_err(|error| format!("Argon2 parameters: {error}"))?;
    let mut output = vec![0u8; output_len];
    let blocks = argon2_params.block_count();
    let argon2 = Argon2::new(algorithm, version, argon2_params);
    with_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(password, salt, &mut output, memory)
    })
    .map_err(|error| format!("Argon2: {error}"))?;
    Ok(output)
}

/// The most spare memory areas kept for later computations: one per hash that runs at
/// once (the native host runs one per core).
const MAX_SPARE_AREAS: usize = 8;
/// Areas larger than this (in blocks of 1 KiB) are freed after use, not kept: only
/// imported hashes with more memory than the service's own need them, once each.
const MAX_KEPT_BLOCKS: usize = 32_768;

/// Memory areas of finished computations, kept for the next ones. A fresh 19 MiB
/// allocation per hash, freed at once, is what the C allocator handles worst: after a
/// few, it keeps such blocks in every thread's arena, and a process that hashed on many
/// threads holds hundreds of MiB it no longer uses. Reused areas keep the memory at one
/// area per concurrent hash.
static SPARE_AREAS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `compute` with at least `blocks` blocks of memory, reusing a spare area when one
/// is large enough. (Argon2 writes every block before it reads it.)
fn with_memory<T>(blocks: usize, compute: impl FnOnce(&mut [Block]) -> T) -> T {
    let spare = {
        let mut areas = SPARE_AREAS.lock().unwrap_or_else(PoisonError::into_inner);
        areas
            .iter()
            .position(|area| area.len() >= blocks)
            .map(|index| areas.swap_remove(index))
    };
    let mut area = spare.unwrap_or_else(|| vec![Block::new(); blocks]);
    let result = compute(&mut area[..blocks]);
    if area.len() <= MAX_KEPT_BLOCKS {
        let mut areas = SPARE_AREAS.lock().unwrap_or_else(PoisonError::into_inner);
        if areas.len() < MAX_SPARE_AREAS {
            areas.push(area);
        }
    }
    result
}

fn check_bounds(password: &[u8], salt: &[u8], params: &Argon2Params) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if !SALT_BYTES.contains(&salt.len()) {
        return Err(format!("the salt must have {SALT_BYTES:?} bytes"));
    }
    if !OUTPUT_BYTES.contains(&params.output_len) {
        return Err(format!("the output must have {OUTPUT_BYTES:?} bytes"));
    }
    if params.memory_kib > MAX_MEMORY_KIB {
        return Err(format!("m is above {MAX_MEMORY_KIB} KiB"));
    }
    if params.iterations > MAX_ITERATIONS {
        return Err(format!("t is above {MAX_ITERATIONS}"));
    }
    if params.parallelism > MAX_PARALLELISM {
        return Err(format!("p is above {MAX_PARALLELISM}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(variant: Variant, version: u32) -> Argon2Params {
        Argon2Params {
            variant,
            version,
            memory_kib: 32,
            iterations: 3,
            parallelism: 4,
            output_len: 32,
        }
    }

    /// The C reference implementation's outputs for the same inputs (argon2-cffi's
    /// `hash_secret_raw`, which wraps it): RFC 9106's password and salt, without its
    /// secret and associated data, which Portcullis does not use.
    #[test]
    fn matches_the_reference_implementation() {
        let password = [1u8; 32];
        let salt = [2u8; 16];
        let argon2id = argon2(&password, &salt, &params(Variant::Argon2id, 0x13)).unwrap();
        let argon2i = argon2(&password, &salt, &params(Variant::Argon2i, 0x13)).unwrap();
        let version_16 = argon2(&password, &salt, &params(Variant::Argon2id, 0x10)).unwrap();
        assert_eq!(
            hex(&argon2id),
            "03aab965c12001c9d7d0d2de33192c0494b684bb148196d73c1df1acaf6d0c2e"
        );
        assert_eq!(
            hex(&argon2i),
            "a9a7510e6db4d588ba3414cd0e094d480d683f97b9ccb612a544fe8ef65ba8e0"
        );
        assert_eq!(
            hex(&version_16),
            "7dda2727d1d6662b9f4b53e3828a9ce7787d1a4cc7dc5bce617f11821d57d9f2"
        );
    }

    /// A reused memory area (holding an earlier computation's blocks) gives the same
    /// hash as a fresh one.
    #[test]
    fn reused_memory_gives_the_same_hash() {
        let first = argon2(b"one", &[3u8; 16], &params(Variant::Argon2id, 0x13)).unwrap();
        argon2(b"two", &[4u8; 16], &params(Variant::Argon2i, 0x13)).unwrap();
        let again = argon2(b"one", &[3u8; 16], &params(Variant::Argon2id, 0x13)).unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn parameters_past_the_bounds_are_refused_without_computing() {
        let mut huge = params(Variant::Argon2id, 0x13);
        huge.memory_kib = MAX_MEMORY_KIB + 1;
        assert!(
            argon2(b"pw", &[0u8; 16], &huge)
                .unwrap_err()
                .contains("m is above")
        );
        let mut slow = params(Variant::Argon2id, 0x13);
        slow.iterations = MAX_ITERATIONS + 1;
        assert!(argon2(b"pw", &[0u8; 16], &slow).is_err());
        assert!(argon2(b"pw", &[0u8; 4], &params(Variant::Argon2id, 0x13)).is_err());
        assert!(argon2(b"pw", &[0u8; 16], &params(Variant::Argon2id, 0x11)).is_err());
        let long = vec![b'x'; MAX_PASSWORD_BYTES + 1];
        let error = argon2(&long, &[0u8; 16], &params(Variant::Argon2id, 0x13)).unwrap_err();
        assert!(!error.contains("xxx"), "{error}");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}
