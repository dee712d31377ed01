//! Importing users from other systems (API.md §9): JSON Lines, one user a line, with the
//! password hash the other system made. Each line is stored whole (the account and its
//! `user_imported` audit event) or not at all; a line whose username, email or mobile
//! number exists already is skipped and the existing account left as it is; every other
//! problem is reported with its line number and field. No report, error or log carries
//! any part of a password hash.
//!
//! Lines are checked and stored [`CHUNK_LINES`] at a time: one lookup per identifier
//! column for the whole chunk, then one batch for the chunk's new accounts (each line's
//! statements whole within it). Should another writer take an identifier meanwhile,
//! the chunk's lines are stored again one batch each, so that only the clashing line is
//! skipped.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::app::App;
use crate::audit;
use crate::auth::registration_conflict;
use crate::db::{Row, text};
use crate::error::{Error, FieldError};
use crate::imported_hash;
use crate::ports::{Statement, StoreError};
use crate::sessions::Client;
use crate::users::User;
use crate::validation::{self, normalise_mobile, username_key};

/// The largest request body `POST /api/v1/admin/users/import` reads (API.md §9), whatever
/// `max_body_bytes` says for the other endpoints.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The longest line accepted, in bytes (without its line ending); a longer one is
/// rejected as `invalid_json`. Hosts reading a file need pass no more than one byte past
/// it.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// How many lines are looked up and stored together.
const CHUNK_LINES: usize = 250;

/// Who imports: the command line, or an admin through the API.
#[derive(Clone, Copy, Debug)]
pub enum Importer<'a> {
    CommandLine,
    Admin { actor_id: &'a str },
}

/// What an import did, line by line (API.md §9).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub imported: u32,
    pub skipped: Vec<Skipped>,
    pub rejected: Vec<Rejected>,
}

/// A line not imported because its user exists already.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub line: u32,
    /// `username_taken`, `email_taken` or `mobile_taken`.
    pub code: &'static str,
}

/// One problem of a line that was not imported.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub line: u32,
    /// The field at fault; `None` when the line is not a JSON object at all.
    pub field: Option<&'static str>,
    pub code: &'static str,
}

/// Imports `lines` (each without its `\n`, a `\r` before it is ignored; the first is line
/// `first_line`). Blank lines are passed over. Fails only when the database does; the lines of the
/// chunks stored before that stay imported.
pub fn import(
    app: &App<'_>,
    first_line: u32,
    lines: &[&[u8]],
    importer: Importer<'_>,
    client: &Client,
) -> Result<Report, Error> {
    let mut report = Report::default();
    let mut number = first_line;
    for chunk in lines.chunks(CHUNK_LINES) {
        let mut accounts = Vec::new();
        for line in chunk {
            match read_line(app, line) {
                Ok(Some(user)) => accounts.push((number, user)),
                Ok(None) => {}
                Err(errors) => report
                    .rejected
                    .extend(errors.into_iter().map(|error| Rejected {
                        line: number,
                        field: error.field,
                        code: error.code,
                    })),
            }
            number = number.saturating_add(1);
        }
        store_chunk(app, accounts, importer, client, &mut report)?;
    }
    Ok(report)
}

/// A problem of a line: the field (none for the line itself) and the code.
struct LineError {
    field: Option<&'static str>,
    code: &'static str,
}

impl From<FieldError> for LineError {
    fn from(error: FieldError) -> Self {
        LineError {
            field: Some(error.field),
            code: error.code,
        }
    }
}

/// The account a line describes; `None` for a blank line.
fn read_line(app: &App<'_>, line: &[u8]) -> Result<Option<User>, Vec<LineError>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let not_json = || {
        vec![LineError {
            field: None,
            code: "invalid_json",
        }]
    };
    if line.len() > MAX_LINE_BYTES {
        return Err(not_json());
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else {
        return Err(not_json());
    };
    let mut fields = Fields::new(object);
    let user = fields.account(app);
    if fields.errors.is_empty() {
        Ok(Some(user))
    } else {
        Err(fields.errors.into_iter().map(LineError::from).collect())
    }
}

/// The fields of one line, read with every problem noted.
struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    fn new(object: Map<String, Value>) -> Self {
        Self {
            object,
            errors: Vec::new(),
        }
    }

    /// The account the line describes (meaningful only when no error was noted).
    fn account(&mut self, app: &App<'_>) -> User {
        let username = self.text("username").unwrap_or_default();
        validation::check_username(&username, &mut self.errors);
        let email = self.text("email").unwrap_or_default();
        let email = validation::check_email(&email, &mut self.errors);
        let mobile_number = self
            .text("mobile_number")
            .filter(|number| !number.is_empty())
            .and_then(|number| validation::check_mobile(&number, &mut self.errors))
            .map(|mobile| mobile.number);
        let password_hash = self.password_hash();
        let now = app.now();
        let created_at = self.created_at().unwrap_or(now);
        User {
            id: app.new_id(),
            username,
            email,
            mobile_number,
            password_hash,
            email_verified: self.flag("email_verified").unwrap_or(false),
            is_active: self.flag("is_active").unwrap_or(true),
            is_admin: self.flag("is_admin").unwrap_or(false),
            mfa_enabled: false,
            created_at,
            updated_at: now,
        }
    }

    /// A hash [`imported_hash::scheme`] accepts.
    fn password_hash(&mut self) -> String {
        let field = "password_hash";
        let given = self.text(field);
        if self.is_mistyped(field) {
            return String::new();
        }
        match given.filter(|hash| !hash.is_empty()) {
            None => {
                self.note(field, "required", "Required.");
                String::new()
            }
            Some(hash) if imported_hash::scheme(&hash).is_none() => {
                self.note(field, "unsupported_hash", "Not a supported password hash.");
                String::new()
            }
            Some(hash) => hash,
        }
    }

    /// `created_at` as Unix seconds, when given (RFC 3339).
    fn created_at(&mut self) -> Option<i64> {
        let field = "created_at";
        let given = self.text(field)?;
        let parsed = OffsetDateTime::parse(&given, &Rfc3339).ok();
        if parsed.is_none() {
            self.note(field, "invalid_format", "An RFC 3339 date and time.");
        }
        parsed.map(OffsetDateTime::unix_timestamp)
    }

    /// A string field; absent or `null` gives `None`, another type notes `invalid_format`.
    fn text(&mut self, field: &'static str) -> Option<String> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => {
                self.note(field, "invalid_format", "Must be a string.");
                None
            }
        }
    }

    /// A boolean field; absent or `null` gives `None`, another type notes `invalid_format`.
    fn flag(&mut self, field: &'static str) -> Option<bool> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(flag)) => Some(*flag),
            Some(_) => {
                self.note(field, "invalid_format", "Must be true or false.");
                None
            }
        }
    }

    fn is_mistyped(&self, field: &str) -> bool {
        self.errors.iter().any(|error| error.field == field)
    }

    fn note(&mut self, field: &'static str, code: &'static str, message: &str) {
        self.errors.push(FieldError::new(field, code, message));
    }
}

/// Stores a chunk's valid accounts: those whose identifiers are taken (in the database
/// or by an earlier line) are skipped, the rest go in one batch.
fn store_chunk(
    app: &App<'_>,
    accounts: Vec<(u32, User)>,
    importer: Importer<'_>,
    client: &Client,
    report: &mut Report,
) -> Result<(), Error> {
    if accounts.is_empty() {
        return Ok(());
    }
    let mut taken = Taken::lookup(app, &accounts)?;
    let mut fresh = Vec::new();
    for (line, user) in accounts {
        match taken.clash(&user) {
            Some(code) => report.skipped.push(Skipped { line, code }),
            None => {
                taken.claim(&user);
                fresh.push((line, user));
            }
        }
    }
    let statements: Vec<Statement> = fresh
        .iter()
        .flat_map(|(_, user)| account_statements(app, user, importer, client))
        .collect();
    if statements.is_empty() {
        return Ok(());
    }
    match app.db.batch(statements) {
        Ok(_) => {
            report.imported += fresh.len() as u32;
            Ok(())
        }
        // Another writer took an identifier since the lookup: line by line instead.
        Err(StoreError::UniqueViolation(_)) => {
            for (line, user) in fresh {
                store_one(app, line, &user, importer, client, report)?;
            }
            Ok(())
        }
        Err(other) => Err(other.into()),
    }
}

/// Stores one account in a batch of its own; a clash makes the line skipped.
fn store_one(
    app: &App<'_>,
    line: u32,
    user: &User,
    importer: Importer<'_>,
    client: &Client,
    report: &mut Report,
) -> Result<(), Error> {
    match app
        .db
        .batch(account_statements(app, user, importer, client).to_vec())
        .map_err(registration_conflict)
    {
        Ok(_) => report.imported += 1,
        Err(taken @ (Error::UsernameTaken | Error::EmailTaken | Error::MobileTaken)) => {
            report.skipped.push(Skipped {
                line,
                code: taken.code(),
            });
        }
        Err(other) => return Err(other),
    }
    Ok(())
}

/// The account and its `user_imported` event.
fn account_statements(
    app: &App<'_>,
    user: &User,
    importer: Importer<'_>,
    client: &Client,
) -> [Statement; 2] {
    let detail = match importer {
        Importer::CommandLine => json!({ "via": "command_line" }),
        Importer::Admin { actor_id } => json!({ "via": "api", "actor_id": actor_id }),
    };
    [
        user.insert(),
        audit::record(
            app,
            audit::USER_IMPORTED,
            Some(&user.id),
            client.ip_address.as_deref(),
            detail,
        ),
    ]
}

/// The identifiers already in use: in the database when the chunk was looked up, or
/// claimed by an earlier line of the import.
struct Taken {
    usernames: HashSet<String>,
    emails: HashSet<String>,
    mobiles: HashSet<String>,
}

impl Taken {
    /// Reads which of the chunk's identifiers the database holds.
    fn lookup(app: &App<'_>, accounts: &[(u32, User)]) -> Result<Taken, Error> {
        let usernames = accounts
            .iter()
            .map(|(_, user)| username_key(&user.username));
        let emails = accounts.iter().map(|(_, user)| user.email.clone());
        let mobiles = accounts.iter().filter_map(|(_, user)| mobile_key(user));
        Ok(Taken {
            usernames: existing(app, "username_key", usernames.collect())?,
            emails: existing(app, "email", emails.collect())?,
            mobiles: existing(app, "mobile_key", mobiles.collect())?,
        })
    }

    /// The skip code when one of the account's identifiers is taken.
    fn clash(&self, user: &User) -> Option<&'static str> {
        if self.usernames.contains(&username_key(&user.username)) {
            Some(Error::UsernameTaken.code())
        } else if self.emails.contains(&user.email) {
            Some(Error::EmailTaken.code())
        } else if mobile_key(user).is_some_and(|key| self.mobiles.contains(&key)) {
            Some(Error::MobileTaken.code())
        } else {
            None
        }
    }

    /// Marks the account's identifiers as taken by this import.
    fn claim(&mut self, user: &User) {
        self.usernames.insert(username_key(&user.username));
        self.emails.insert(user.email.clone());
        if let Some(key) = mobile_key(user) {
            self.mobiles.insert(key);
        }
    }
}

fn mobile_key(user: &User) -> Option<String> {
    user.mobile_number
        .as_deref()
        .and_then(normalise_mobile)
        .map(|mobile| mobile.key)
}

/// Which of `values` the `users` column `column` holds (one query).
fn existing(
    app: &App<'_>,
    column: &'static str,
    values: Vec<String>,
) -> Result<HashSet<String>, Error> {
    if values.is_empty() {
        return Ok(HashSet::new());
    }
    let placeholders = vec!["?"; values.len()].join(", ");
    let sql = format!("SELECT {column} FROM users WHERE {column} IN ({placeholders})");
    let params: Vec<_> = values.into_iter().map(text).collect();
    app.db
        .query(&sql, &params)?
        .iter()
        .map(|row: &Row| row.text(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth;
    use crate::testing::Harness;

    const BCRYPT: &str = "$2b$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9.";

    fn run(harness: &Harness, text: &str) -> Report {
        let lines: Vec<&[u8]> = text.split('\n').map(str::as_bytes).collect();
        import(
            &harness.app(),
            1,
            &lines,
            Importer::CommandLine,
            &Client::default(),
        )
        .unwrap()
    }

    fn line(username: &str, email: &str) -> String {
        json!({ "username": username, "email": email, "password_hash": BCRYPT }).to_string()
    }

    fn rejected(line: u32, field: Option<&'static str>, code: &'static str) -> Rejected {
        Rejected { line, field, code }
    }

    #[test]
    fn every_line_is_imported_skipped_or_rejected_with_its_number() {
        let harness = Harness::new(&[]);
        let text = [
            line("alice", "alice@example.com"),
            String::new(),
            "{not json".into(),
            line("ALICE", "other@example.com"),
            json!({ "username": "b", "email": "bob", "password_hash": "md5$x$y" }).to_string(),
            json!({ "username": "carol", "email": "carol@example.com", "is_admin": "yes",
                "password_hash": 7, "created_at": "yesterday" })
            .to_string(),
            "[1, 2]".into(),
            line("dave", "dave@example.com"),
            String::new(),
        ]
        .join("\n");
        let report = run(&harness, &text);
        assert_eq!(report.imported, 2);
        assert_eq!(
            report.skipped,
            vec![Skipped {
                line: 4,
                code: "username_taken"
            }]
        );
        assert_eq!(
            report.rejected,
            vec![
                rejected(3, None, "invalid_json"),
                rejected(5, Some("username"), "too_short"),
                rejected(5, Some("email"), "invalid_format"),
                rejected(5, Some("password_hash"), "unsupported_hash"),
                rejected(6, Some("password_hash"), "invalid_format"),
                rejected(6, Some("created_at"), "invalid_format"),
                rejected(6, Some("is_admin"), "invalid_format"),
                rejected(7, None, "invalid_json"),
            ]
        );
    }

    #[test]
    fn existing_users_are_skipped_and_left_unchanged() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let first = json!({ "username": "alice", "email": "alice@example.com",
            "mobile_number": "+1 415 555 0100", "password_hash": BCRYPT,
            "email_verified": true, "is_admin": true,
            "created_at": "2020-01-02T03:04:05Z" });
        assert_eq!(run(&harness, &first.to_string()).imported, 1);
        let before = auth::get_user(&app, &the_id(&harness, "alice")).unwrap();
        assert!(before.email_verified && before.is_admin && before.is_active);
        assert_eq!(before.created_at, 1_577_934_245);
        let clashes = [
            line("alice", "new@example.com"),
            line("bob", "ALICE@example.com"),
            json!({ "username": "carol", "email": "carol@example.com",
                "mobile_number": "14155550100", "password_hash": BCRYPT })
            .to_string(),
            line("dave", "dave@example.com"),
            line("dave", "dave2@example.com"),
        ];
        let report = run(&harness, &clashes.join("\n"));
        let codes: Vec<_> = report.skipped.iter().map(|skip| skip.code).collect();
        assert_eq!(
            codes,
            [
                "username_taken",
                "email_taken",
                "mobile_taken",
                "username_taken"
            ]
        );
        assert_eq!(report.skipped[3].line, 5);
        assert_eq!(report.imported, 1);
        assert_eq!(auth::get_user(&app, &before.id).unwrap(), before);
    }

    #[test]
    fn a_clash_inside_a_batch_skips_only_its_line() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let accounts: Vec<(u32, User)> = ["erin", "frank"]
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let text = line(name, &format!("{name}@example.com"));
                let user = read_line(&app, text.as_bytes()).ok().flatten().unwrap();
                (index as u32 + 1, user)
            })
            .collect();
        // Someone takes Frank's username between the lookup and the batch.
        run(&harness, &line("FRANK", "someone@example.com"));
        let mut report = Report::default();
        for (line, user) in &accounts {
            store_one(
                &app,
                *line,
                user,
                Importer::CommandLine,
                &Client::default(),
                &mut report,
            )
            .unwrap();
        }
        assert_eq!(report.imported, 1);
        assert_eq!(
            report.skipped,
            vec![Skipped {
                line: 2,
                code: "username_taken"
            }]
        );
    }

    #[test]
    fn each_imported_user_is_audited_with_who_imported_it() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        let lines = [line("alice", "alice@example.com")];
        let lines: Vec<&[u8]> = lines.iter().map(|line| line.as_bytes()).collect();
        let admin = Importer::Admin {
            actor_id: "admin-1",
        };
        import(&app, 1, &lines, admin, &Client::default()).unwrap();
        let rows = app
            .db
            .query(
                "SELECT user_id, detail FROM audit_events WHERE event = 'user_imported'",
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text(0).unwrap(), the_id(&harness, "alice"));
        let detail: Value = serde_json::from_str(&rows[0].text(1).unwrap()).unwrap();
        assert_eq!(detail, json!({ "via": "api", "actor_id": "admin-1" }));
        assert!(!rows[0].text(1).unwrap().contains("$2b$"));
    }

    #[test]
    fn overlong_lines_are_not_json_and_chunks_keep_the_numbering() {
        let harness = Harness::new(&[]);
        let mut lines: Vec<String> = (0..(CHUNK_LINES + 3))
            .map(|index| line(&format!("user_{index}"), &format!("u{index}@example.com")))
            .collect();
        lines.push(format!(
            "{{\"username\":\"{}\"}}",
            "x".repeat(MAX_LINE_BYTES)
        ));
        lines.push(line("user_0", "again@example.com"));
        let report = run(&harness, &lines.join("\n"));
        assert_eq!(report.imported, CHUNK_LINES as u32 + 3);
        let last = CHUNK_LINES as u32 + 5;
        assert_eq!(
            report.rejected,
            vec![rejected(last - 1, None, "invalid_json")]
        );
        assert_eq!(
            report.skipped,
            vec![Skipped {
                line: last,
                code: "username_taken"
            }]
        );
    }

    #[test]
    fn the_first_login_rehashes_to_the_current_parameters_and_later_logins_still_work() {
        let harness = Harness::new(&[("max_sessions", "0")]);
        let app = harness.app();
        run(&harness, &line("alice", "alice@example.com"));
        let client = Client::default();
        assert_eq!(
            auth::login(&app, "alice", "Correct horse", &client),
            Err(Error::InvalidCredentials)
        );
        let stored = |app: &App<'_>| {
            crate::users::find_by_login(app, "alice")
                .unwrap()
                .unwrap()
                .password_hash
        };
        assert_eq!(stored(&app), BCRYPT, "a wrong password changes nothing");
        auth::login(&app, "alice@example.com", "correct horse", &client).unwrap();
        assert!(crate::password::is_current(&stored(&app)));
        auth::login(&app, "alice", "correct horse", &client).unwrap();
        let rehashes = app
            .db
            .query(
                "SELECT detail FROM audit_events WHERE event = 'password_rehashed'",
                &[],
            )
            .unwrap();
        assert_eq!(rehashes.len(), 1, "only the first login rehashes");
        assert_eq!(rehashes[0].text(0).unwrap(), r#"{"from":"bcrypt"}"#);
    }

    fn the_id(harness: &Harness, username: &str) -> String {
        crate::users::find_by_login(&harness.app(), username)
            .unwrap()
            .unwrap()
            .id
    }
}
