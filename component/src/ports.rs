//! The component's view of its host, as plain Rust traits: the database (`Store`), the
//! clock, randomness and the Argon2 kernel (`Env`). The wasm glue implements them over the
//! WIT imports; unit tests implement them natively (an in-memory SQLite store, a clock the
//! test sets, the same Argon2 kernel the native host uses).

/// The SQL dialect of the database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// A value bound to a placeholder or read from a column.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Rows returned by a query, each as long as `columns`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// One statement of an atomic batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
    /// When set, the statement must affect exactly this many rows or the batch rolls back.
    pub expect_rows: Option<u64>,
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreError {
    /// A unique constraint was violated; the constraint name or the database's message.
    UniqueViolation(String),
    /// Statement `n` of a batch affected another number of rows than expected.
    ConditionFailed(u32),
    /// The database cannot be reached.
    Unavailable(String),
    /// Any other database error.
    Other(String),
}

/// SQL access, as the `portcullis:auth/store` WIT interface describes it.
pub trait Store {
    fn dialect(&self) -> Dialect;
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, StoreError>;
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// All statements in one transaction: all take effect or none does.
    fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError>;
}

/// The clock, the randomness source and the Argon2 kernel.
pub trait Env {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_millis(&self) -> i64;
    /// Cryptographically secure random bytes.
    fn random_bytes(&self, len: usize) -> Vec<u8>;
    /// The raw Argon2 hash of `password` with `salt` (`portcullis:auth/password-hashing`
    /// in `wit/hashing.wit`); an error when the host refuses the parameters.
    fn argon2(
        &self,
        password: &[u8],
        salt: &[u8],
        params: &Argon2Params,
    ) -> Result<Vec<u8>, String>;
}

/// An Argon2 variant, as [`Env::argon2`] computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argon2Variant {
    Argon2i,
    Argon2id,
}

/// The parameters of one Argon2 computation (RFC 9106).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    pub variant: Argon2Variant,
    /// `16` (0x10) or `19` (0x13).
    pub version: u32,
    /// `m`, in KiB.
    pub memory_kib: u32,
    /// `t`.
    pub iterations: u32,
    /// `p`.
    pub parallelism: u32,
    /// The hash's length in bytes.
    pub output_len: u32,
}

/// [`Env::argon2`] computed natively by the kernel the native host runs (`hasher/`):
/// for native implementations of [`Env`] (the unit tests, the benchmark's baseline).
#[cfg(not(target_arch = "wasm32"))]
pub fn native_argon2(
    password: &[u8],
    salt: &[u8],
    params: &Argon2Params,
) -> Result<Vec<u8>, String> {
    let variant = match params.variant {
        Argon2Variant::Argon2i => portcullis_hasher::Variant::Argon2i,
        Argon2Variant::Argon2id => portcullis_hasher::Variant::Argon2id,
    };
    let params = portcullis_hasher::Argon2Params {
        variant,
        version: params.version,
        memory_kib: params.memory_kib,
        iterations: params.iterations,
        parallelism: params.parallelism,
        output_len: params.output_len,
    };
    portcullis_hasher::argon2(password, salt, &params)
}
