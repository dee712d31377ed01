//! What every operation works with: the database, the clock and randomness, and the
//! settings. Built once per request (or typed call) by the glue layer.

use crate::db::Db;
use crate::ports::Env;
use crate::settings::Settings;
use crate::tokens;

/// The context of one request.
pub struct App<'a> {
    pub db: Db<'a>,
    pub env: &'a dyn Env,
    pub settings: &'a Settings,
}

impl App<'_> {
    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.env.now_millis().div_euclid(1000)
    }

    /// A new id: a UUIDv7, so ids sort by creation time.
    pub fn new_id(&self) -> String {
        let random = self.env.random_bytes(10);
        let mut bytes = [0u8; 10];
        bytes.copy_from_slice(&random[..10.min(random.len())]);
        let millis = u64::try_from(self.env.now_millis()).unwrap_or_default();
        uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    /// A new opaque token of 256 random bits.
    pub fn new_opaque_token(&self) -> String {
        tokens::encode_opaque(&self.env.random_bytes(tokens::OPAQUE_TOKEN_BYTES))
    }
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-22T10:00:00Z`).
pub fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
