//! The schema migrations, the files of `migrations/<dialect>` embedded at build time
//! (`build.rs` lists them), recorded as sqlx records them: a database migrated by Spin
//! can be served by the native host and the other way round.

use sha2::{Digest as _, Sha384};

/// One migration file.
#[derive(Debug)]
pub struct Migration {
    /// The number before the first `_` of its file name.
    pub version: i64,
    /// The rest of the file name without `.sql`, underscores as spaces (as sqlx has it).
    pub description: &'static str,
    /// The file's SQL, statements separated by `;`.
    pub sql: &'static str,
}

impl Migration {
    /// The checksum sqlx stores and checks: SHA-384 of the SQL.
    pub fn checksum(&self) -> Vec<u8> {
        Sha384::digest(self.sql.as_bytes()).to_vec()
    }
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[cfg(test)]
mod tests {
    use super::{POSTGRES, SQLITE};

    #[test]
    fn both_dialects_have_the_same_versions_in_order() {
        let versions = |list: &[super::Migration]| list.iter().map(|m| m.version).collect();
        let sqlite: Vec<i64> = versions(SQLITE);
        assert!(!sqlite.is_empty());
        assert!(sqlite.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(sqlite, versions(POSTGRES));
        assert_eq!(SQLITE[0].description, "initial");
    }
}
