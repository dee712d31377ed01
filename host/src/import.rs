//! `portcullis users import FILE|-` (docs/reference.md "Importing users"): reads JSON
//! Lines from a file or standard input and hands them to the component's `import-users`
//! [`CHUNK_LINES`] consecutive lines at a time, so that a file of any length is read
//! with bounded memory. A progress line goes to standard error every
//! [`PROGRESS_EVERY_LINES`] lines and at the end; the report, merged over the chunks,
//! is printed as one JSON object on standard output. Every rule (what a line must hold,
//! which hashes are accepted) is the component's: this reads, counts and prints.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_component::import::MAX_LINE_BYTES;
use serde::Serialize;

use crate::api::{self, ImportRejected, ImportSkipped};
use crate::instances::Instances;

/// Lines per `import-users` call.
const CHUNK_LINES: usize = 1_000;
/// Lines between two progress lines.
const PROGRESS_EVERY_LINES: u32 = 10_000;

/// Where the lines come from: a file, or standard input (`-`).
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    /// The source a command-line argument names.
    pub fn from_argument(argument: &Path) -> Source {
        if argument == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(argument.to_path_buf())
        }
    }

    /// Opens the source for reading.
    pub fn open(&self) -> io::Result<Box<dyn BufRead>> {
        match self {
            Source::File(path) => Ok(Box::new(BufReader::new(File::open(path)?))),
            Source::Stdin => Ok(Box::new(BufReader::new(io::stdin()))),
        }
    }

    /// The source's name in messages.
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "standard input".into(),
        }
    }
}

/// The report of a whole import, merged over its chunks; it serialises as API.md §9's
/// report.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Lines read so far.
    #[serde(skip)]
    pub lines: u32,
    pub imported: u64,
    pub skipped: Vec<ImportSkipped>,
    pub rejected: Vec<ImportRejected>,
}

impl Totals {
    fn add(&mut self, report: api::ImportReport) {
        self.imported += u64::from(report.imported);
        self.skipped.extend(report.skipped);
        self.rejected.extend(report.rejected);
    }

    /// The progress line: how far the import got.
    pub fn progress(&self) -> String {
        format!(
            "users import: {} lines read, {} imported, {} skipped, {} rejected",
            self.lines,
            self.imported,
            self.skipped.len(),
            self.rejected_lines(),
        )
    }

    /// How many lines were rejected (a line may have several problems, listed together).
    fn rejected_lines(&self) -> usize {
        let mut lines: Vec<u32> = self.rejected.iter().map(|problem| problem.line).collect();
        lines.dedup();
        lines.len()
    }
}

/// Why an import stopped early.
#[derive(Debug)]
pub enum Stopped {
    /// The source could not be read past this line (the lines before it were imported).
    Unreadable { line: u32, error: io::Error },
    /// The component (or the database behind it) failed.
    Failed(anyhow::Error),
}

/// Reads every line of `reader` and imports them chunk by chunk into `totals`.
pub async fn run(
    instances: &Instances,
    reader: &mut dyn BufRead,
    totals: &mut Totals,
) -> Result<(), Stopped> {
    let mut chunk = Vec::with_capacity(CHUNK_LINES);
    loop {
        let line = read_line(reader).map_err(|error| Stopped::Unreadable {
            line: totals.lines + 1,
            error,
        })?;
        let at_end = line.is_none();
        chunk.extend(line);
        if chunk.len() == CHUNK_LINES || (at_end && !chunk.is_empty()) {
            let first_line = totals.lines + 1;
            let count = chunk.len() as u32;
            let lines = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES));
            let report = import_chunk(instances, first_line, lines)
                .await
                .map_err(Stopped::Failed)?;
            totals.add(report);
            totals.lines += count;
            if at_end || totals.lines.is_multiple_of(PROGRESS_EVERY_LINES) {
                eprintln!("{}", totals.progress());
            }
        }
        if at_end {
            return Ok(());
        }
    }
}

/// Imports one chunk of consecutive lines, the first being line `first_line`.
async fn import_chunk(
    instances: &Instances,
    first_line: u32,
    lines: Vec<Vec<u8>>,
) -> anyhow::Result<api::ImportReport> {
    let last_line = first_line as usize + lines.len() - 1;
    let report = api::import_users(instances, first_line, lines)
        .await?
        .with_context(|| format!("importing lines {first_line} to {last_line}"))?;
    Ok(report)
}

/// The next line without its `\n`; `None` at the end. Of a line longer than the
/// component accepts, only the first [`MAX_LINE_BYTES`] + 1 bytes are kept (enough for
/// the component to reject it) and the rest is skipped, so one huge line cannot exhaust
/// memory.
fn read_line(reader: &mut dyn BufRead) -> io::Result<Option<Vec<u8>>> {
    let limit = MAX_LINE_BYTES as u64 + 1;
    let mut line = Vec::new();
    if (&mut *reader).take(limit).read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() as u64 == limit {
        reader.skip_until(b'\n')?;
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_overlong_ones_cut_to_one_byte_past_the_limit() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let text = format!("first\r\n\n{long}\nlast");
        let mut reader = io::Cursor::new(text.into_bytes());
        let mut lines = Vec::new();
        while let Some(line) = read_line(&mut reader).unwrap() {
            lines.push(line);
        }
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], b"first\r");
        assert_eq!(lines[1], b"");
        assert_eq!(lines[2].len(), MAX_LINE_BYTES + 1);
        assert_eq!(lines[3], b"last");
    }
}
