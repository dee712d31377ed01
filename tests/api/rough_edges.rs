//! The rough edges of #20: a spent link's page says so instead of showing its form,
//! SMTP mail carries `Message-ID` and `Date`, `listening on` is a log line too (in JSON
//! as in text), and `trace` logging leaves the compiler's traces out.

use crate::account::post_form;
use crate::mail::{
    SmtpSink, mailing_app, private_database, request_verification, user_with_verification_mail,
};
use crate::support::TestApp;
use std::time::Duration;

api_tests! {
    /// Once its token is spent, the verification link's page has no form any more.
    fn a_spent_verification_link_shows_no_form() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (_, _, token) = user_with_verification_mail(&app, &sink);
        let live = app.get(&format!("/verify-email?token={token}"));
        assert_eq!(live.status(), 200);
        assert!(live.text().expect("page").contains("<form"));

        assert_eq!(post_form(&app, "/verify-email", &[("token", &token)]).status(), 200);
        let spent = app.get(&format!("/verify-email?token={token}"));
        assert_eq!(spent.status(), 400);
        let page = spent.text().expect("page");
        assert!(!page.contains("<form"), "{page}");
        assert!(page.contains("already used"), "{page}");

        let unknown = app.get("/reset-password?token=no-such-token");
        assert_eq!(unknown.status(), 400);
        assert!(!unknown.text().expect("page").contains("<form"));
    }

    /// Mail over SMTP has a `Date` and a `Message-ID` (receivers mark mail without one
    /// as spam).
    fn smtp_mail_has_a_message_id_and_a_date() {
        let database = private_database();
        let sink = SmtpSink::start();
        let app = mailing_app(&database, &sink, &[]);
        let (email, _, _) = user_with_verification_mail(&app, &sink);
        let mail = sink.wait_for(&email);
        let message_id = mail.header("Message-ID").expect("a Message-ID");
        assert!(
            message_id.starts_with('<') && message_id.ends_with("@localhost>"),
            "{message_id}"
        );
        assert!(mail.header("Date").is_some(), "a Date");
    }

    /// A mail the per-address throttle holds back is a log line naming the account and
    /// the kind of mail, never the address.
    fn a_throttled_mail_is_a_log_line() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_RATE_LIMIT", "off")]);
        let (user, access_token, body) = app.registered_user();
        let user_id = body["user"]["id"].as_str().expect("the user's id");
        request_verification(&app, &access_token);
        request_verification(&app, &access_token);
        let line = format!("mail throttled: no verify_email mail for user {user_id}");
        let output = app.wait_for_output(&line, Duration::from_secs(10));
        let logged = output.lines().find(|logged| logged.contains(&line)).unwrap_or_default();
        assert!(!logged.contains(&user.email), "{logged}");
    }

    /// `listening on http://ADDR` is also a line of the JSON log.
    fn listening_on_is_a_json_log_line() {
        let app = TestApp::spawn_with(&[("PORTCULLIS_LOG_FORMAT", "json")]);
        let json_message = format!("\"message\":\"listening on {}\"", app.address);
        let output = app.wait_for_output(&json_message, Duration::from_secs(10));
        let logged = output
            .lines()
            .filter(|line| line.starts_with("[stderr] {"))
            .any(|line| line.contains(&json_message));
        assert!(logged, "{output}");
    }

    /// `PORTCULLIS_LOG=trace` on a first start (the component compiled anew) keeps the
    /// compiler's and the runtime's traces out: they come only when named.
    fn trace_logging_leaves_the_compiler_out_unless_named() {
        let cache = tempfile::tempdir().expect("tempdir");
        let cache_dir = cache.path().display().to_string();
        let app = TestApp::spawn_with(&[
            ("PORTCULLIS_LOG", "trace"),
            ("PORTCULLIS_CACHE_DIR", &cache_dir),
        ]);
        app.assert_healthy();
        let output = app.output();
        assert!(output.contains("compiling the component"), "a first start:\n{output}");
        let compiler_lines = output
            .lines()
            .filter(|line| {
                ["cranelift", "wasmtime", "regalloc2", "wasmparser"]
                    .iter()
                    .any(|target| line.contains(&format!(" {target}")))
            })
            .count();
        assert_eq!(compiler_lines, 0, "{output}");
        assert!(output.len() < 1_000_000, "{} bytes of log", output.len());
    }
}
