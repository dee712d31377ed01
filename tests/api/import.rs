//! Importing users from other systems (API.md §9): `portcullis users import FILE|-` and
//! `POST /api/v1/admin/users/import`, the report, line atomicity, skipped users left
//! unchanged, login with each hash format and the rehash at the first login, wrong
//! passwords answered as any other, and no hash in a report or a log.

use std::io::Write as _;
use std::process::{Output, Stdio};

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::admin::{admin_create, portcullis};
use crate::support::{
    TestApp, assert_problem, json_body, shared_database, unique_mobile, unique_suffix, unique_user,
};

const IMPORT: &str = "/api/v1/admin/users/import";
const AUDIT: &str = "/api/v1/admin/audit";
const ME: &str = "/api/v1/users/me";
const NDJSON: &str = "application/x-ndjson";

/// The password of every hash below.
const PASSWORD: &str = "correct horse";

/// One hash of [`PASSWORD`] per format, and the `from` its rehash records: made by python
/// `bcrypt` 5 (cost 4, and the same hash under `$2a$`/`$2y$`), `hashlib.pbkdf2_hmac` in
/// Django's form, passlib 1.7.4, and argon2-cffi 25 (its default m = 65536, t = 3, p = 4,
/// and older Argon2id parameters than the service's).
const HASHES: [(&str, &str); 8] = [
    (
        "$2b$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9.",
        "bcrypt",
    ),
    (
        "$2a$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9.",
        "bcrypt",
    ),
    (
        "$2y$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9.",
        "bcrypt",
    ),
    (
        "pbkdf2_sha256$1000$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=",
        "pbkdf2_sha256",
    ),
    (
        "$pbkdf2-sha256$1000$.f9fa.39PyckRMgZoxRirA$KYHiQ45RBUDXo9L2i0UOFMQm/rs.GYDl2fWV..pooj4",
        "pbkdf2_sha256",
    ),
    (
        "$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$B+Dg8yf0/uqq5OzjyBRagE/yIGeiS65Ra7pH0NKBauU",
        "argon2i",
    ),
    (
        "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$7YbYS2w24dSTBgFeLZ/Pp5pFxLjWTXyOMrr1Ld8BcEI",
        "argon2id",
    ),
    (
        "$argon2id$v=19$m=19456,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$XL+39m/CjTvS+/eVVGDw8CV6EO6ds6ILS4OgivMKZsM",
        "argon2id",
    ),
];

/// Pieces of the hashes above that must never show up in a report or a log.
fn hash_pieces() -> Vec<&'static str> {
    HASHES
        .iter()
        .map(|(hash, _)| hash.rsplit('$').next().unwrap_or(hash))
        .chain([
            "1jRicVqJcqUVE1qkaNyNhe",
            "seasalt",
            "c29tZXNhbHRzb21lc2FsdA",
        ])
        .collect()
}

fn assert_no_hash_in(text: &str, what: &str) {
    for piece in hash_pieces() {
        assert!(
            !text.contains(piece),
            "{what} shows a hash ({piece}):\n{text}"
        );
    }
}

/// A line for a new user with `hash`.
fn user_line(hash: &str) -> (String, Value) {
    let name = format!("imp_{}", unique_suffix());
    let line = json!({
        "username": name,
        "email": format!("{name}@example.com"),
        "password_hash": hash,
    });
    (name, line)
}

fn lines(values: &[Value]) -> String {
    values
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// An app on `database_url` and an admin made there by `portcullis admin create` (so on
/// every host); returns the app and the admin's token.
fn admin_app_on(database_url: &str, overrides: &[(&str, &str)]) -> (TestApp, String) {
    let app = TestApp::spawn_on(database_url, overrides);
    let admin = unique_user();
    let (created, stdout, stderr) = admin_create(database_url, &admin, &admin.password);
    assert!(created, "`admin create` failed:\n{stdout}\n{stderr}");
    let login = app.login_ok(&admin.username, &admin.password);
    let token = login["access_token"].as_str().unwrap().to_owned();
    (app, token)
}

fn import_api(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> Response {
    app.request(Method::POST, IMPORT)
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .expect("POST import")
}

/// Runs `portcullis users import` on `database_url` with `text` as the file (or, with
/// `stdin`, on standard input); returns the output.
fn import_cli(database_url: &str, text: &str, stdin: bool) -> Output {
    let folder = tempfile::tempdir().expect("tempdir");
    let file = folder.path().join("users.jsonl");
    std::fs::write(&file, text).expect("writing the file");
    let argument = if stdin {
        "-".into()
    } else {
        file.display().to_string()
    };
    let mut command = portcullis(
        &["users", "import", &argument],
        folder.path(),
        &[("PORTCULLIS_DATABASE_URL", database_url)],
    );
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("starting portcullis users import");
    let mut input = child.stdin.take().expect("stdin");
    if stdin {
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    drop(input);
    child.wait_with_output().expect("portcullis users import")
}

/// The report on stdout: exactly one JSON object.
fn cli_report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The audit events of `user_id` named `event`, seen by an admin.
fn audit_events(app: &TestApp, token: &str, user_id: &str, event: &str) -> Vec<Value> {
    let path = format!("{AUDIT}?user_id={user_id}&event={event}");
    let page = json_body(app.get_with_token(&path, token), 200);
    page["events"].as_array().cloned().unwrap_or_default()
}

/// The problem answer of a wrong password, without its per-request members.
fn wrong_password_answer(app: &TestApp, login: &str) -> (u16, Value) {
    let resp = app.login(login, "Wrong horse 1!");
    let status = resp.status().as_u16();
    let body = assert_problem(resp, 401, "invalid_credentials");
    (status, body)
}

/// Two users of a FastAPI app: username stem, password, and its bcrypt hash of cost 12
/// made by python `bcrypt` 5 (`bcrypt.hashpw(password, bcrypt.gensalt(12))`).
const FASTAPI_USERS: [(&str, &str, &str); 2] = [
    (
        "fa_one",
        "Fastapi-Secret-1",
        "$2b$12$qHa36hFvzB7Ch7Dl585HaOR5Mff6iZf.zisM68q.arxyK8m2uOCD6",
    ),
    (
        "fa_two",
        "Fastapi-Secret-2",
        "$2b$12$LfYhs4iUTYOxy5DixI39/.bxNm6uCFXdZoDYA1/uc/xotP3D3/.8e",
    ),
];

/// The export query of the README's block marked `<!-- export:{source} -->`: the text
/// between the command's opening quote (after `opening`) and `" > users.jsonl`.
fn readme_export_query(source: &str, opening: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading README.md");
    let marker = format!("<!-- export:{source} -->");
    let block = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker}"))..];
    let command = block
        .lines()
        .find(|line| line.contains(opening))
        .unwrap_or_else(|| panic!("no {opening:?} after {marker}"));
    let start = command.find(opening).unwrap() + opening.len();
    let end = command
        .rfind("\" > users.jsonl")
        .expect("the command's end");
    command[start..end].replace("\\\"", "\"")
}

/// The `users` table of a FastAPI app, as SQL for `dialect`, with [`FASTAPI_USERS`]
/// (the second without a mobile number); returns the usernames.
fn fastapi_table(dialect: &str, suffix: &str) -> (String, Vec<String>) {
    let id = if dialect == "mysql" {
        "INT AUTO_INCREMENT PRIMARY KEY"
    } else {
        "INTEGER PRIMARY KEY"
    };
    let time = if dialect == "postgres" {
        "TIMESTAMP"
    } else {
        "DATETIME"
    };
    let mut sql = format!(
        "CREATE TABLE users (id {id}, username VARCHAR(64), email VARCHAR(255), \
         mobile_number VARCHAR(32), hashed_password VARCHAR(255), created_at {time});"
    );
    let mut names = Vec::new();
    for (index, (stem, _, hash)) in FASTAPI_USERS.iter().enumerate() {
        let name = format!("{stem}_{suffix}");
        let mobile = if index == 0 {
            format!("'{}'", unique_mobile())
        } else {
            "NULL".into()
        };
        sql.push_str(&format!(
            " INSERT INTO users (username, email, mobile_number, hashed_password, created_at) \
             VALUES ('{name}', '{name}@fastapi.example', {mobile}, '{hash}', '2024-03-0{} 10:20:30');",
            index + 1
        ));
        names.push(name);
    }
    (sql, names)
}

/// Runs `program` with `args`; insists on success; returns stdout.
fn run_tool(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether `program` runs here (the export tests need the database's own client, as
/// the README's commands do; a machine without it skips that export, saying so).
fn tool_present(program: &str) -> bool {
    let present = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !present {
        eprintln!("skipped: the README's export with {program} ({program} is not installed)");
    }
    present
}

/// The JSON Lines the README's SQLite query writes from a FastAPI `users` table; `None`
/// without the `sqlite3` command.
fn export_from_sqlite(suffix: &str) -> Option<(String, Vec<String>)> {
    if !tool_present("sqlite3") {
        return None;
    }
    let folder = tempfile::tempdir().expect("tempdir");
    let file = folder.path().join("app.db").display().to_string();
    let (sql, names) = fastapi_table("sqlite", suffix);
    run_tool("sqlite3", &[&file, &sql]);
    let query = readme_export_query("sqlite", "sqlite3 app.db \"");
    Some((run_tool("sqlite3", &[&file, &query]), names))
}

/// The JSON Lines the README's MariaDB query writes, from a database of its own on the
/// server of `PORTCULLIS_TEST_MYSQL_URL` (dropped afterwards); `None` without one or
/// without the `mariadb` command.
fn export_from_mariadb(suffix: &str) -> Option<(String, Vec<String>)> {
    let url = reqwest::Url::parse(&std::env::var("PORTCULLIS_TEST_MYSQL_URL").ok()?).ok()?;
    if !tool_present("mariadb") {
        return None;
    }
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(3306).to_string();
    let user = if url.username().is_empty() {
        "root"
    } else {
        url.username()
    }
    .to_owned();
    let connection = [
        "-h",
        host.as_str(),
        "-P",
        port.as_str(),
        "-u",
        user.as_str(),
    ];
    let database = format!("fastapi_{suffix}");
    let (sql, names) = fastapi_table("mysql", suffix);
    let setup = format!("CREATE DATABASE {database}; USE {database}; {sql}");
    run_tool("mariadb", &[&connection[..], &["-e", &setup]].concat());
    let query = readme_export_query("mysql", "-e \"");
    let export = [
        "--batch",
        "--raw",
        "--skip-column-names",
        database.as_str(),
        "-e",
        query.as_str(),
    ];
    let lines = run_tool("mariadb", &[&connection[..], &export[..]].concat());
    run_tool(
        "mariadb",
        &[
            &connection[..],
            &["-e", &format!("DROP DATABASE {database}")],
        ]
        .concat(),
    );
    Some((lines, names))
}

api_tests! {
    /// The README's FastAPI recipe as written: a FastAPI `users` table on SQLite and on
    /// MariaDB with cost-12 bcrypt hashes, exported with the README's query, imported with
    /// `portcullis users import`; each user logs in with their password, by username
    /// and by email, and the first login rehashes (`from: bcrypt`).
    fn the_readmes_fastapi_export_imports_and_logs_in() {
        let database = shared_database();
        let (app, token) = admin_app_on(&database.url, &[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let exports = [
            export_from_sqlite(&unique_suffix()),
            export_from_mariadb(&unique_suffix()),
        ];
        for (lines, names) in exports.into_iter().flatten() {
            let output = import_cli(&database.url, &lines, false);
            assert_eq!(
                cli_report(&output),
                json!({ "imported": names.len(), "skipped": [], "rejected": [] }),
                "{lines}"
            );
            for (name, (_, password, _)) in names.iter().zip(FASTAPI_USERS) {
                let first = app.login_ok(name, password);
                let user_id = first["user"]["id"].as_str().unwrap().to_owned();
                app.login_ok(&format!("{name}@fastapi.example"), password);
                let rehashed = audit_events(&app, &token, &user_id, "password_rehashed");
                assert_eq!(rehashed.len(), 1, "{rehashed:?}");
                assert_eq!(rehashed[0]["detail"]["from"], "bcrypt");
                let me = json_body(
                    app.get_with_token(ME, first["access_token"].as_str().unwrap()),
                    200,
                );
                assert_eq!(me["created_at"].as_str().map(|at| &at[..7]), Some("2024-03"));
            }
        }
    }

    /// Every format of §9 imports through the endpoint; the user logs in by username,
    /// email and mobile number, the first login rehashes (audited with the old scheme),
    /// later logins still work; a wrong password answers as for a native account.
    fn each_hash_format_logs_in_and_is_rehashed_once() {
        let database = shared_database();
        let (app, token) = admin_app_on(&database.url, &[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let native = unique_user();
        app.register_user(&native);
        let (_, native_wrong) = wrong_password_answer(&app, &native.username);
        let mut users = Vec::new();
        let mut body = Vec::new();
        for (hash, from) in HASHES {
            let (name, mut line) = user_line(hash);
            let mobile = unique_mobile();
            line["mobile_number"] = json!(mobile);
            body.push(line);
            users.push((name, mobile, from));
        }
        let resp = import_api(&app, &token, NDJSON, lines(&body).into_bytes());
        let report = json_body(resp, 200);
        assert_eq!(
            report,
            json!({ "imported": HASHES.len(), "skipped": [], "rejected": [] })
        );
        assert_no_hash_in(&report.to_string(), "the report");
        for (name, mobile, from) in &users {
            let (status, body) = wrong_password_answer(&app, name);
            assert_eq!(status, 401);
            assert_eq!(body, native_wrong, "{from}: a wrong password answers otherwise");
            let first = app.login_ok(&format!("{name}@example.com"), PASSWORD);
            let user_id = first["user"]["id"].as_str().unwrap().to_owned();
            let me = json_body(
                app.get_with_token(ME, first["access_token"].as_str().unwrap()),
                200,
            );
            assert_eq!(me["username"], name.as_str());
            assert_eq!(me["email_verified"], false);
            assert_eq!(me["is_admin"], false);
            app.login_ok(name, PASSWORD);
            app.login_ok(mobile, PASSWORD);
            let rehashed = audit_events(&app, &token, &user_id, "password_rehashed");
            assert_eq!(rehashed.len(), 1, "{from}: {rehashed:?}");
            assert_eq!(rehashed[0]["detail"]["from"], *from, "{rehashed:?}");
            let imported = audit_events(&app, &token, &user_id, "user_imported");
            assert_eq!(imported.len(), 1, "{imported:?}");
            assert!(imported[0]["detail"]["actor_id"].is_string(), "{imported:?}");
            let (_, after) = wrong_password_answer(&app, name);
            assert_eq!(after, native_wrong, "{from}: after the rehash");
        }
        assert_no_hash_in(&app.output(), "the log");
    }

    /// Six correct first logins of one imported user at once all open a session: the
    /// one whose rehash lands first changes the hash under the others, which check the
    /// password again against the new hash instead of answering 401. One rehash is
    /// recorded.
    fn concurrent_first_logins_of_an_imported_user_all_succeed() {
        let database = shared_database();
        let (app, token) = admin_app_on(&database.url, &[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (name, line) = user_line(HASHES[0].0);
        let resp = import_api(&app, &token, NDJSON, line.to_string().into_bytes());
        assert_eq!(json_body(resp, 200)["imported"], 1);
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let logins: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        app.request(Method::POST, "/api/v1/auth/login")
                            .json(&json!({ "login": name, "password": PASSWORD }))
                            .send()
                            .expect("POST login")
                            .status()
                            .as_u16()
                    })
                })
                .collect();
            logins.into_iter().map(|login| login.join().expect("a login thread")).collect()
        });
        assert_eq!(statuses, vec![200; 6]);
        let first = app.login_ok(&name, PASSWORD);
        let user_id = first["user"]["id"].as_str().unwrap().to_owned();
        let rehashed = audit_events(&app, &token, &user_id, "password_rehashed");
        assert_eq!(rehashed.len(), 1, "{rehashed:?}");
    }

    /// The report names every line's problem with its number; a line is imported whole
    /// or not at all; a line whose user exists is skipped and that user left unchanged.
    fn the_report_names_each_line_and_existing_users_stay_unchanged() {
        let database = shared_database();
        let (app, token) = admin_app_on(&database.url, &[]);
        let existing = unique_user();
        let registered = app.register_user(&existing);
        let before = json_body(
            app.get_with_token(ME, registered["access_token"].as_str().unwrap()),
            200,
        );
        let (good, good_line) = user_line(HASHES[0].0);
        let (half, mut half_line) = user_line(HASHES[0].0);
        half_line["email"] = json!("not-an-address");
        let (later, mut later_line) = user_line(HASHES[3].0);
        later_line["username"] = json!(half);
        let mut unsupported = user_line("md5$salt$0123456789abcdef").1;
        unsupported["created_at"] = json!("yesterday");
        let mut costly = user_line(HASHES[0].0).1;
        costly["password_hash"] = json!(HASHES[0].0.replacen("$04$", "$17$", 1));
        let clash_username = json!({ "username": existing.username.to_uppercase(),
            "email": format!("{}@example.com", unique_suffix()), "password_hash": HASHES[0].0 });
        let clash_email = json!({ "username": format!("imp_{}", unique_suffix()),
            "email": existing.email.to_uppercase(), "password_hash": HASHES[4].0 });
        let text = [
            good_line.to_string(),
            half_line.to_string(),
            "{\"username\": ".into(),
            String::new(),
            unsupported.to_string(),
            clash_username.to_string(),
            clash_email.to_string(),
            costly.to_string(),
            later_line.to_string(),
        ]
        .join("\r\n");
        let report = json_body(import_api(&app, &token, NDJSON, text.into_bytes()), 200);
        assert_eq!(
            report,
            json!({
                "imported": 2,
                "skipped": [
                    { "line": 6, "code": "username_taken" },
                    { "line": 7, "code": "email_taken" },
                ],
                "rejected": [
                    { "line": 2, "field": "email", "code": "invalid_format" },
                    { "line": 3, "field": null, "code": "invalid_json" },
                    { "line": 5, "field": "password_hash", "code": "unsupported_hash" },
                    { "line": 5, "field": "created_at", "code": "invalid_format" },
                    { "line": 8, "field": "password_hash", "code": "unsupported_hash" },
                ],
            })
        );
        app.login_ok(&good, PASSWORD);
        // Line 2 left nothing behind: line 9 took its username.
        app.login_ok(&half, PASSWORD);
        assert_problem(app.login(&later, PASSWORD), 401, "invalid_credentials");
        let login = app.login_ok(&existing.username, &existing.password);
        let after = json_body(
            app.get_with_token(ME, login["access_token"].as_str().unwrap()),
            200,
        );
        assert_eq!(after, before, "a skipped line changed the existing user");
        assert_problem(app.login(&existing.username, PASSWORD), 401, "invalid_credentials");
    }

    /// The endpoint is for admins, takes JSON Lines only, up to 1 MiB (more than the
    /// global body limit), and `/openapi.json` lists it.
    fn the_endpoint_needs_an_admin_ndjson_and_at_most_a_mebibyte() {
        let database = shared_database();
        let (app, token) = admin_app_on(&database.url, &[]);
        let user = unique_user();
        let user_token = app.register_user(&user)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, line) = user_line(HASHES[0].0);
        let body = line.to_string().into_bytes();
        assert_problem(import_api(&app, &user_token, NDJSON, body.clone()), 403, "forbidden");
        let resp = app.post_raw(IMPORT, Some(NDJSON), body.clone());
        assert_problem(resp, 401, "unauthorized");
        let resp = import_api(&app, &token, "application/json", body);
        assert_problem(resp, 415, "unsupported_media_type");
        // 200 lines of ~150 bytes: past the 10 KiB default limit, within 1 MiB.
        let many: Vec<Value> = (0..200).map(|_| user_line(HASHES[0].0).1).collect();
        let report = json_body(import_api(&app, &token, NDJSON, lines(&many).into_bytes()), 200);
        assert_eq!(report["imported"], 200, "{report}");
        let padding = vec![b' '; 1024 * 1024 + 1];
        let resp = import_api(&app, &token, NDJSON, padding);
        assert_problem(resp, 413, "payload_too_large");
        let openapi = json_body(app.get("/openapi.json"), 200);
        assert!(openapi["paths"][IMPORT]["post"].is_object(), "not in /openapi.json");
    }

    /// Wrong passwords against an imported hash count for the login throttle like any
    /// other.
    fn wrong_passwords_against_an_imported_hash_are_throttled() {
        let database = shared_database();
        let (app, token) = admin_app_on(&database.url, &[("PORTCULLIS_LOGIN_THROTTLE", "2")]);
        let (name, line) = user_line(HASHES[0].0);
        let report = json_body(import_api(&app, &token, NDJSON, line.to_string().into_bytes()), 200);
        assert_eq!(report["imported"], 1);
        for _ in 0..2 {
            wrong_password_answer(&app, &name);
        }
        assert_problem(app.login(&name, PASSWORD), 429, "rate_limited");
    }

    /// `portcullis users import FILE`: the report as one JSON object on stdout, progress
    /// on stderr, exit 0 when nothing was rejected, 1 otherwise, 2 for an unreadable
    /// file; `-` reads stdin. Flags and `created_at` are taken as given.
    fn the_command_reports_on_stdout_with_its_exit_codes() {
        let database = shared_database();
        let (name, mut line) = user_line(HASHES[1].0);
        line["email_verified"] = json!(true);
        line["is_admin"] = json!(true);
        line["created_at"] = json!("2019-03-04T05:06:07+02:00");
        let output = import_cli(&database.url, &format!("{line}\n"), false);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert_eq!(
            cli_report(&output),
            json!({ "imported": 1, "skipped": [], "rejected": [] })
        );
        assert!(stderr.contains("1 lines read, 1 imported"), "no progress line: {stderr}");

        let (other, other_line) = user_line(HASHES[5].0);
        let text = format!("{line}\nnot json\n{other_line}\n");
        let output = import_cli(&database.url, &text, true);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            cli_report(&output),
            json!({
                "imported": 1,
                "skipped": [{ "line": 1, "code": "username_taken" }],
                "rejected": [{ "line": 2, "field": null, "code": "invalid_json" }],
            })
        );
        let everything = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_no_hash_in(&everything, "the command's output");

        let folder = tempfile::tempdir().expect("tempdir");
        let missing = folder.path().join("missing.jsonl");
        let output = portcullis(
            &["users", "import", &missing.display().to_string()],
            folder.path(),
            &[("PORTCULLIS_DATABASE_URL", &database.url)],
        )
        .output()
        .expect("portcullis users import");
        assert_eq!(output.status.code(), Some(2));
        assert!(output.stdout.is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).contains("missing.jsonl"));

        let app = TestApp::spawn_on(&database.url, &[]);
        let login = app.login_ok(&name, PASSWORD);
        let user = &login["user"];
        assert_eq!(user["email_verified"], true, "{user}");
        assert_eq!(user["is_admin"], true, "{user}");
        assert_eq!(user["created_at"], "2019-03-04T03:06:07Z", "{user}");
        app.login_ok(&other, PASSWORD);
    }
}
