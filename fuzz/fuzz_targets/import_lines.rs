//! The user import's line parser and its storing (`import::import`, what the CLI and
//! `POST /api/v1/admin/users/import` call): the input is JSON Lines, imported into a
//! world where `fuzz_user` and `fuzz_admin` exist. Every accepted hash format goes
//! through `imported_hash::scheme` here (none is computed at import). Asserted: the
//! import never fails on a working database; every non-blank line is exactly one of
//! imported, skipped or rejected, with line numbers in range; and importing the same
//! lines again imports nothing.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use portcullis_component::import::{self, Importer};
use portcullis_fuzz::{client, in_world};

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|byte| *byte == b'\n').collect();
    let non_blank = lines
        .iter()
        .filter(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            !line.iter().all(u8::is_ascii_whitespace)
        })
        .count();
    in_world(&[], |world, _| {
        let app = world.app();
        let report = import::import(&app, 1, &lines, Importer::CommandLine, &client())
            .expect("the in-memory database does not fail");
        let in_range = |line: u32| (1..=lines.len() as u32).contains(&line);
        let rejected: BTreeSet<u32> = report.rejected.iter().map(|r| r.line).collect();
        let skipped: BTreeSet<u32> = report.skipped.iter().map(|s| s.line).collect();
        assert!(rejected.iter().chain(&skipped).all(|line| in_range(*line)));
        assert!(rejected.is_disjoint(&skipped), "{report:?}");
        assert_eq!(skipped.len(), report.skipped.len(), "one skip per line");
        assert_eq!(
            report.imported as usize + skipped.len() + rejected.len(),
            non_blank,
            "{report:?}"
        );
        let again = import::import(&app, 1, &lines, Importer::CommandLine, &client())
            .expect("the in-memory database does not fail");
        assert_eq!(again.imported, 0, "{again:?}");
        assert_eq!(again.rejected, report.rejected);
    })
    .expect("the default settings are valid");
});
