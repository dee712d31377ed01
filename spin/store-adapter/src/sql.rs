//! SQL text the adapter handles itself: splitting a migration file into its statements
//! (Spin runs one statement per call), and the probe that names the columns of an empty
//! PostgreSQL result.
//!
//! Semicolons inside quotes ('…', "…") and comments (`--`, `/* */`) do not end a
//! statement. The migrations hold no trigger or function bodies (`BEGIN … END;`).

/// The statements of `script`, without the empty ones (or those that are only comments).
pub fn statements(script: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start = 0;
    let mut chars = script.char_indices().peekable();
    while let Some((index, character)) = chars.next() {
        match character {
            '\'' | '"' => skip_until(&mut chars, |c| c == character),
            '-' if chars.peek().is_some_and(|(_, next)| *next == '-') => {
                skip_until(&mut chars, |c| c == '\n');
            }
            '/' if chars.peek().is_some_and(|(_, next)| *next == '*') => {
                chars.next();
                let mut previous = ' ';
                skip_until(&mut chars, |c| {
                    let end = previous == '*' && c == '/';
                    previous = c;
                    end
                });
            }
            ';' => {
                push_statement(&mut statements, &script[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    push_statement(&mut statements, &script[start..]);
    statements
}

/// A query with the columns of `select` that always returns a row (all NULL when
/// `select` has none): Spin's PostgreSQL names the columns only of a result that has a
/// row, and `portcullis:auth/store` names them for an empty result too. Its parameters
/// are those of `select`, in the same places. `None` for a statement that is not a
/// `SELECT`, which cannot stand in a subquery.
pub fn columns_probe(select: &str) -> Option<String> {
    let select = select.trim().trim_end_matches(';').trim_end();
    let first_word = select.split_whitespace().next()?;
    first_word.eq_ignore_ascii_case("SELECT").then(|| {
        format!("SELECT probed.* FROM (SELECT 1) AS one LEFT JOIN ({select}) AS probed ON TRUE")
    })
}

/// Advances past the first character for which `end` holds (or to the end).
fn skip_until(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    mut end: impl FnMut(char) -> bool,
) {
    for (_, character) in chars.by_ref() {
        if end(character) {
            return;
        }
    }
}

fn push_statement<'a>(statements: &mut Vec<&'a str>, text: &'a str) {
    let text = text.trim();
    if !only_comments(text) {
        statements.push(text);
    }
}

/// Whether `text` holds nothing but whitespace and `--` comments.
fn only_comments(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with("--"))
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let script = "-- a table; with a comment\nCREATE TABLE t (a TEXT DEFAULT 'x;y');\n\
                      /* block; comment */ INSERT INTO \"odd;name\" VALUES (1);\n-- trailing\n";
        assert_eq!(
            statements(script),
            [
                "-- a table; with a comment\nCREATE TABLE t (a TEXT DEFAULT 'x;y')",
                "/* block; comment */ INSERT INTO \"odd;name\" VALUES (1)",
            ]
        );
    }

    #[test]
    fn a_select_is_probed_for_its_columns_as_a_subquery() {
        assert_eq!(
            super::columns_probe("  select id FROM t WHERE a = $1 ORDER BY id LIMIT $2;\n")
                .as_deref(),
            Some(
                "SELECT probed.* FROM (SELECT 1) AS one LEFT JOIN \
                 (select id FROM t WHERE a = $1 ORDER BY id LIMIT $2) AS probed ON TRUE"
            )
        );
        for other in ["INSERT INTO t VALUES (1)", "SELECTED", "", "  ;"] {
            assert_eq!(super::columns_probe(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_last_statement_without_semicolon_counts() {
        assert_eq!(statements("SELECT 1;\nSELECT 2"), ["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn every_migration_splits_into_schema_statements() {
        for migration in crate::migrations::SQLITE
            .iter()
            .chain(crate::migrations::POSTGRES)
        {
            let parts = statements(migration.sql);
            assert!(
                !parts.is_empty(),
                "migration {} is empty",
                migration.version
            );
            for part in parts {
                let words: Vec<&str> = part
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("--"))
                    .flat_map(str::split_whitespace)
                    .take(1)
                    .collect();
                assert!(
                    matches!(
                        words.as_slice(),
                        ["CREATE" | "ALTER" | "DROP" | "INSERT" | "UPDATE"]
                    ),
                    "migration {}: unexpected statement {part:?}",
                    migration.version
                );
            }
        }
    }
}
