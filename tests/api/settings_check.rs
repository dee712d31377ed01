//! Start-up fails fast, loud and complete (#20): every setting is checked by every
//! command before anything is touched, all problems at once with exit code 2; unknown
//! variables and file keys name the closest setting; the listen address is bound before
//! the migrations; a host that cannot unseal the EdDSA signing key refuses to start, and
//! `/health` reports it when it appears while serving.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::backends::private_database;
use crate::support::{TEST_JWT_SECRET, TestApp, isolate_settings};

/// A generous bound on a command that should end on its own (not a timing assertion:
/// only a guard against a test that would hang).
const COMMAND_GUARD: Duration = Duration::from_secs(120);

/// What a finished command left: its exit code and its standard error.
struct Finished {
    code: Option<i32>,
    stderr: String,
}

/// Runs `portcullis ARGS` in `folder` with only `settings` among `PORTCULLIS_*`.
fn run(args: &[&str], folder: &Path, settings: &[(&str, &str)]) -> Finished {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .args(args)
        .current_dir(folder)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    isolate_settings(&mut command);
    for (key, value) in settings {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start portcullis");
    let deadline = Instant::now() + COMMAND_GUARD;
    while child.try_wait().expect("wait for portcullis").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("portcullis {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("portcullis output");
    Finished {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The `error:` lines of `stderr`.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect()
}

/// Whether `folder` is as empty as it was (nothing but `keep`).
fn untouched(folder: &Path, keep: &[&str]) -> bool {
    std::fs::read_dir(folder)
        .expect("read the folder")
        .all(|entry| {
            let name = entry.expect("entry").file_name();
            keep.iter().any(|kept| name == *kept)
        })
}

api_tests! {
    /// Bad settings of the host and of the component stop every command before it
    /// creates the data folder or the database: all of them, one line each, exit 2.
    fn every_command_reports_every_bad_setting_at_once_and_touches_nothing() {
        let bad = [
            ("PORTCULLIS_LISTEN", "nope"),
            ("PORTCULLIS_DB_MAX_CONNECTIONS", "0"),
            ("PORTCULLIS_LOG_FORMAT", "xml"),
            ("PORTCULLIS_SMTP_URL", "http://mail.example.com"),
            ("PORTCULLIS_ACCESS_TTL", "-5"),
            ("PORTCULLIS_PASSWORD_POLICY", "strict"),
            ("PORTCULLIS_ADMIN_USERNAME", "root_admin"),
        ];
        let commands: [&[&str]; 4] = [
            &["serve"],
            &["migrate"],
            &["keys", "rotate"],
            &["admin", "create", "--username", "boss_1", "--email", "boss@example.com"],
        ];
        for args in commands {
            let folder = tempfile::tempdir().expect("tempdir");
            let finished = run(args, folder.path(), &bad);
            assert_eq!(finished.code, Some(2), "{args:?}:\n{}", finished.stderr);
            let errors = error_lines(&finished.stderr);
            for (variable, _) in &bad[..6] {
                let named = errors
                    .iter()
                    .filter(|line| line.starts_with(&format!("error: {variable}:")))
                    .count();
                assert_eq!(named, 1, "{args:?}: {variable} once:\n{}", finished.stderr);
            }
            assert!(
                errors.iter().any(|line| line.contains("PORTCULLIS_ADMIN_PASSWORD")),
                "{args:?}: the incomplete admin trio:\n{}",
                finished.stderr
            );
            assert_eq!(errors.len(), 7, "{args:?}: one line each:\n{}", finished.stderr);
            assert!(untouched(folder.path(), &[]), "{args:?} created files");
        }
    }

    /// `migrate` checks the component's settings too, before it creates the database.
    fn migrate_refuses_a_bad_component_setting_before_the_database_exists() {
        let folder = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}/fresh.db", folder.path().display());
        let finished = run(
            &["migrate"],
            folder.path(),
            &[("PORTCULLIS_DATABASE_URL", &db), ("PORTCULLIS_ACCESS_TTL", "-5")],
        );
        assert_eq!(finished.code, Some(2), "{}", finished.stderr);
        assert_eq!(
            error_lines(&finished.stderr),
            ["error: PORTCULLIS_ACCESS_TTL: expected a whole number from 1 to 86400, got \"-5\""]
        );
        assert!(untouched(folder.path(), &[]), "the database was created");
    }

    /// An unknown `PORTCULLIS_*` variable is a warning naming the closest setting; the
    /// service starts anyway.
    fn an_unknown_variable_is_a_warning_with_the_closest_setting() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_MAX_SESIONS", "3")]);
        app.assert_healthy();
        app.wait_for_output(
            "PORTCULLIS_MAX_SESIONS is not a setting and is ignored \
             (did you mean PORTCULLIS_MAX_SESSIONS?)",
            std::time::Duration::from_secs(10),
        );
    }

    /// Unknown keys of the settings file are errors with line, column and the closest
    /// key, reported with the other problems; a syntax error has line and column.
    fn unknown_file_keys_and_syntax_errors_have_line_and_column() {
        let folder = tempfile::tempdir().expect("tempdir");
        let config = folder.path().join("portcullis.toml");
        std::fs::write(&config, "log = \"info\"\nlisen = \"127.0.0.1:0\"\n  max_sesions = 3\n")
            .expect("write the file");
        let config_arg = config.display().to_string();
        let finished = run(
            &["--config", &config_arg, "migrate"],
            folder.path(),
            &[("PORTCULLIS_REFRESH_TTL", "1")],
        );
        assert_eq!(finished.code, Some(2), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        let expected = [
            format!(
                "error: --config {config_arg}: line 2, column 1: unknown key `lisen` \
                 (did you mean `listen`?)"
            ),
            format!(
                "error: --config {config_arg}: line 3, column 3: unknown key `max_sesions` \
                 (did you mean `max_sessions`?)"
            ),
        ];
        for line in &expected {
            assert!(errors.contains(&line.as_str()), "{line}:\n{}", finished.stderr);
        }
        assert!(
            errors.iter().any(|line| line.starts_with("error: PORTCULLIS_REFRESH_TTL:")),
            "the environment's problem too:\n{}",
            finished.stderr
        );
        assert!(untouched(folder.path(), &["portcullis.toml"]));

        std::fs::write(&config, "log = \"info\"\nlisten = \n").expect("write the file");
        let finished = run(&["--config", &config_arg, "migrate"], folder.path(), &[]);
        assert_eq!(finished.code, Some(2), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        assert_eq!(errors.len(), 1, "{}", finished.stderr);
        assert!(
            errors[0].starts_with(&format!("error: --config {config_arg}: line 2, column 10: ")),
            "{}",
            finished.stderr
        );
    }

    /// A listen address in use stops `serve` before the migrations create the database.
    fn a_port_in_use_stops_serve_before_the_migrations() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
        let address = taken.local_addr().expect("address").to_string();
        let folder = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}/fresh.db", folder.path().display());
        let data = folder.path().join("data").display().to_string();
        let finished = run(
            &["serve"],
            folder.path(),
            &[
                ("PORTCULLIS_LISTEN", &address),
                ("PORTCULLIS_DATABASE_URL", &db),
                ("PORTCULLIS_DATA_DIR", &data),
                ("PORTCULLIS_JWT_SECRET", TEST_JWT_SECRET),
            ],
        );
        assert_eq!(finished.code, Some(1), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        assert_eq!(errors.len(), 1, "{}", finished.stderr);
        assert!(
            errors[0].starts_with(&format!("error: PORTCULLIS_LISTEN: cannot listen on {address}")),
            "{}",
            finished.stderr
        );
        assert!(!folder.path().join("fresh.db").exists(), "migrated before binding");
    }

    /// `keys rotate` under HS256 is refused up front with a line that says why.
    fn keys_rotate_under_hs256_says_why_before_touching_anything() {
        let folder = tempfile::tempdir().expect("tempdir");
        let finished = run(&["keys", "rotate"], folder.path(), &[]);
        assert_eq!(finished.code, Some(2), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        assert_eq!(errors.len(), 1, "{}", finished.stderr);
        assert!(errors[0].contains("HS256"), "{}", finished.stderr);
        assert!(untouched(folder.path(), &[]));
    }

    /// A host whose secret cannot unseal the EdDSA signing key refuses to start with one
    /// line naming the setting; a host that meets such a key while serving says so on
    /// `/health`.
    fn a_signing_key_sealed_with_another_secret_is_loud() {
        let database = private_database();
        let other_secret = "another-secret-of-the-same-length-0123456789abcd";
        let eddsa = [("PORTCULLIS_JWT_ALGORITHM", "EdDSA")];
        // Started before any key exists: it starts.
        let stranger = TestApp::spawn_on(
            &database.url,
            &[eddsa[0], ("PORTCULLIS_JWT_SECRET", other_secret)],
        );
        stranger.assert_healthy();
        // Another host makes the first key, sealed with its own secret.
        let owner = TestApp::spawn_on(&database.url, &eddsa);
        let jwks = owner.get("/.well-known/jwks.json");
        assert_eq!(jwks.status(), 200);

        let health = stranger.get("/health");
        assert_eq!(health.status(), 503);
        let body: serde_json::Value = health.json().expect("a JSON body");
        assert_eq!(body["database"], "ok", "{body}");
        assert_eq!(body["keys"], "unavailable", "{body}");
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(!body.to_string().contains(other_secret));

        let folder = tempfile::tempdir().expect("tempdir");
        let data = folder.path().display().to_string();
        let finished = run(
            &["serve"],
            folder.path(),
            &[
                ("PORTCULLIS_LISTEN", "127.0.0.1:0"),
                ("PORTCULLIS_DATABASE_URL", &database.url),
                ("PORTCULLIS_DATA_DIR", &data),
                ("PORTCULLIS_JWT_ALGORITHM", "EdDSA"),
                ("PORTCULLIS_JWT_SECRET", other_secret),
            ],
        );
        assert_eq!(finished.code, Some(2), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        assert_eq!(errors.len(), 1, "{}", finished.stderr);
        assert!(
            errors[0].starts_with("error: PORTCULLIS_JWT_SECRET: ")
                && errors[0].contains("sealed with another secret"),
            "{}",
            finished.stderr
        );
        assert!(!finished.stderr.contains(other_secret));
    }

    /// `migrate` says what it applied, then that the database is up to date.
    fn migrate_says_what_it_applied() {
        let folder = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}/fresh.db", folder.path().display());
        let settings = [("PORTCULLIS_DATABASE_URL", db.as_str())];
        let first = run(&["migrate"], folder.path(), &settings);
        assert_eq!(first.code, Some(0), "{}", first.stderr);
        assert!(first.stderr.contains("applied "), "{}", first.stderr);
        assert!(first.stderr.contains(" initial"), "{}", first.stderr);
        let second = run(&["migrate"], folder.path(), &settings);
        assert_eq!(second.code, Some(0), "{}", second.stderr);
        assert!(second.stderr.contains("the database is up to date"), "{}", second.stderr);
        assert!(!second.stderr.contains("applied "), "{}", second.stderr);
    }

    /// A refused database connection is named as such, not as a pool that timed out.
    fn a_refused_database_connection_names_the_cause() {
        let closed = TcpListener::bind("127.0.0.1:0").expect("take a port");
        let port = closed.local_addr().expect("address").port();
        drop(closed);
        let folder = tempfile::tempdir().expect("tempdir");
        for url in [
            format!("postgres://portcullis@127.0.0.1:{port}/portcullis"),
            format!("mysql://portcullis@127.0.0.1:{port}/portcullis"),
        ] {
            // One try: waiting for the server (faults_database tests it) changes nothing here.
            let settings = [
                ("PORTCULLIS_DATABASE_URL", url.as_str()),
                ("PORTCULLIS_DATABASE_WAIT", "0"),
            ];
            let finished = run(&["migrate"], folder.path(), &settings);
            assert_eq!(finished.code, Some(1), "{}", finished.stderr);
            let errors = error_lines(&finished.stderr);
            assert_eq!(errors.len(), 1, "{}", finished.stderr);
            assert!(errors[0].contains("refused"), "{}", finished.stderr);
            assert!(!errors[0].contains("timed out"), "{}", finished.stderr);
        }
    }

    /// A database server's refusal is reported once, not repeated by each layer
    /// (PostgreSQL and MySQL: SQLite creates its file).
    fn a_missing_database_is_reported_once() {
        let Some(url) = crate::backends::current().database_url else {
            return;
        };
        let missing = crate::backends::with_database(&url, "portcullis_no_such_database");
        let folder = tempfile::tempdir().expect("tempdir");
        let finished = run(&["migrate"], folder.path(), &[("PORTCULLIS_DATABASE_URL", &missing)]);
        assert_eq!(finished.code, Some(1), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        assert_eq!(errors.len(), 1, "{}", finished.stderr);
        assert_eq!(
            errors[0].matches("portcullis_no_such_database").count(),
            1,
            "{}",
            finished.stderr
        );
    }

    /// The bootstrap admin is checked with the registration rules before anything is
    /// touched, and its password is never shown.
    fn a_bad_bootstrap_admin_is_refused_before_anything_is_touched() {
        let folder = tempfile::tempdir().expect("tempdir");
        let finished = run(
            &["serve"],
            folder.path(),
            &[
                ("PORTCULLIS_ADMIN_USERNAME", "12345"),
                ("PORTCULLIS_ADMIN_EMAIL", "not-an-address"),
                ("PORTCULLIS_ADMIN_PASSWORD", "Password123!"),
            ],
        );
        assert_eq!(finished.code, Some(2), "{}", finished.stderr);
        let errors = error_lines(&finished.stderr);
        for variable in ["USERNAME", "EMAIL", "PASSWORD"] {
            let prefix = format!("error: PORTCULLIS_ADMIN_{variable}: ");
            assert!(
                errors.iter().any(|line| line.starts_with(&prefix)),
                "{prefix}:\n{}",
                finished.stderr
            );
        }
        assert!(!finished.stderr.contains("Password123!"), "{}", finished.stderr);
        assert!(untouched(folder.path(), &[]));
    }
}
