//! Mail: verification and reset mails are composed here (text and HTML, links built from
//! `PORTCULLIS_PUBLIC_URL`, never from a request) and written to the `outbox` table in
//! the same transaction as the change that causes them. Hosts deliver them through the
//! typed API: `claim` takes due mails for a lease (so two hosts never send one mail
//! twice), then `sent` or `failed` (which schedules a retry with exponential backoff).

use serde::Serialize;

use crate::app::App;
use crate::db::{integer, statement, text};
use crate::error::Error;
use crate::ports::Statement;

/// After this many failed attempts a mail is given up.
pub const MAX_ATTEMPTS: i64 = 10;
/// The longest wait between two attempts.
const MAX_BACKOFF_SECONDS: i64 = 3600;
const FIRST_BACKOFF_SECONDS: i64 = 30;
/// Per address and kind: at most one mail per minute and this many per hour.
const MAILS_PER_HOUR: i64 = 5;
const MIN_SECONDS_BETWEEN_MAILS: i64 = 60;
/// Error texts kept in the outbox are cut to this length.
const MAX_ERROR_CHARS: usize = 500;

/// Why a mail is sent; also the kind its throttle counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    VerifyEmail,
    ResetPassword,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VerifyEmail => "verify_email",
            Kind::ResetPassword => "reset_password",
        }
    }

    /// How long the token this kind of mail carries can be used, in seconds (API.md §7).
    pub fn token_lifetime(self) -> i64 {
        match self {
            Kind::VerifyEmail => 24 * 3600,
            Kind::ResetPassword => 30 * 60,
        }
    }
}

/// A mail claimed for delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mail {
    pub id: String,
    /// Proves the claim when reporting the outcome.
    pub claim: String,
    pub to: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub attempts: u32,
}

/// True when another mail of this kind may go to `address` (the account `user_id`'s) now;
/// when not, says so in the log.
pub fn may_send(app: &App<'_>, address: &str, kind: Kind, user_id: &str) -> Result<bool, Error> {
    let allowed = within_mail_throttle(app, address, kind)?;
    if !allowed {
        crate::log::warn(&format!(
            "mail throttled: no {} mail for user {user_id}; its address had one in the last \
             {MIN_SECONDS_BETWEEN_MAILS} s or {MAILS_PER_HOUR} in the last hour",
            kind.as_str()
        ));
    }
    Ok(allowed)
}

fn within_mail_throttle(app: &App<'_>, address: &str, kind: Kind) -> Result<bool, Error> {
    let now = app.now();
    let row = app.db.query_one(
        "SELECT COUNT(*), MAX(created_at) FROM outbox \
         WHERE recipient = ? AND kind = ? AND created_at > ?",
        &[text(address), text(kind.as_str()), integer(now - 3600)],
    )?;
    let Some(row) = row else {
        return Ok(true);
    };
    let count = row.integer(0)?;
    let latest = row.optional_integer(1)?;
    Ok(count < MAILS_PER_HOUR && latest.is_none_or(|at| now - at >= MIN_SECONDS_BETWEEN_MAILS))
}

/// The statement that queues the mail carrying `token` to `address`.
pub fn compose(app: &App<'_>, kind: Kind, address: &str, username: &str, token: &str) -> Statement {
    let base = &app.settings.public_url;
    let (subject, path, lead, action, validity) = match kind {
        Kind::VerifyEmail => (
            "Verify your email address",
            "verify-email",
            "Please confirm that this is your email address.",
            "Verify my email address",
            "The link is valid for 24 hours.",
        ),
        Kind::ResetPassword => (
            "Reset your password",
            "reset-password",
            "Someone (hopefully you) asked to reset your password.",
            "Choose a new password",
            "The link is valid for 30 minutes. If you did not ask for it, ignore this mail.",
        ),
    };
    let link = format!("{base}/{path}?token={token}");
    let text_body = format!("Hello {username},\n\n{lead}\n\n{action}: {link}\n\n{validity}\n");
    let html_body = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p>{lead}</p>\
         <p><a href=\"{href}\">{action}</a></p><p>{validity}</p></body></html>",
        name = escape_html(username),
        href = escape_html(&link),
    );
    enqueue(app, address, kind.as_str(), subject, text_body, html_body)
}

/// The kind of the notice sent to an account's old address when the address changes.
const ADDRESS_CHANGE_NOTICE: &str = "email_changed";

/// The statement that queues a notice to `old_address` that the account's address is now
/// `new_address` (shown masked). It carries no token and no link.
pub fn compose_address_change_notice(
    app: &App<'_>,
    old_address: &str,
    username: &str,
    new_address: &str,
) -> Statement {
    let subject = "Your email address was changed";
    let masked = mask_address(new_address);
    let lead = format!("The email address of your account is now {masked}.");
    let advice = "If you did not make this change, contact the service's administrator at \
                  once: someone may have taken over your account.";
    let text_body = format!("Hello {username},\n\n{lead}\n\n{advice}\n");
    let html_body = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p>{lead}</p><p>{advice}</p>\
         </body></html>",
        name = escape_html(username),
        lead = escape_html(&lead),
    );
    enqueue(
        app,
        old_address,
        ADDRESS_CHANGE_NOTICE,
        subject,
        text_body,
        html_body,
    )
}

/// `jane@example.com` as `j***@example.com`: enough for the owner to recognise, not a
/// new address handed to whoever reads the old mailbox.
fn mask_address(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let first: String = local.chars().take(1).collect();
    format!("{first}***@{domain}")
}

/// The statement that puts a mail in the outbox, due now.
fn enqueue(
    app: &App<'_>,
    address: &str,
    kind: &str,
    subject: &str,
    text_body: String,
    html_body: String,
) -> Statement {
    let now = app.now();
    statement(
        "INSERT INTO outbox (id, recipient, kind, subject, text_body, html_body, created_at, \
         next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            text(app.new_id()),
            text(address),
            text(kind),
            text(subject),
            text(text_body),
            text(html_body),
            integer(now),
            integer(now),
        ],
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Claims up to `max` due mails for `lease_seconds`. A mail claimed by another host whose
/// lease has not run out is skipped.
pub fn claim(app: &App<'_>, max: u32, lease_seconds: u32) -> Result<Vec<Mail>, Error> {
    let now = app.now();
    give_up_expired_links(app, now)?;
    let candidates = app.db.query(
        "SELECT id FROM outbox WHERE sent_at IS NULL AND attempts < ? AND next_attempt_at <= ? \
         AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY next_attempt_at, id LIMIT ?",
        &[
            integer(MAX_ATTEMPTS),
            integer(now),
            integer(now),
            integer(i64::from(max)),
        ],
    )?;
    let mut claimed = Vec::new();
    for row in candidates {
        let id = row.text(0)?;
        let claim = app.new_opaque_token();
        let taken = app.db.execute(
            "UPDATE outbox SET claim = ?, claimed_until = ? WHERE id = ? AND sent_at IS NULL \
             AND (claimed_until IS NULL OR claimed_until <= ?)",
            &[
                text(&claim),
                integer(now + i64::from(lease_seconds)),
                text(&id),
                integer(now),
            ],
        )?;
        if taken == 1 {
            claimed.extend(read_claimed(app, &id, &claim)?);
        }
    }
    Ok(claimed)
}

fn read_claimed(app: &App<'_>, id: &str, claim: &str) -> Result<Option<Mail>, Error> {
    let row = app.db.query_one(
        "SELECT recipient, subject, text_body, html_body, attempts FROM outbox \
         WHERE id = ? AND claim = ?",
        &[text(id), text(claim)],
    )?;
    row.map(|row| {
        Ok(Mail {
            id: id.to_string(),
            claim: claim.to_string(),
            to: row.text(0)?,
            subject: row.text(1)?,
            text_body: row.text(2)?,
            html_body: row.text(3)?,
            attempts: u32::try_from(row.integer(4)?).unwrap_or(u32::MAX),
        })
    })
    .transpose()
}

/// Unsent mails whose link has expired are given up, and the bodies of every given-up
/// mail are erased: a token stays in the outbox no longer than it can be used
/// (API.md §11).
fn give_up_expired_links(app: &App<'_>, now: i64) -> Result<(), Error> {
    const EXPIRED: &str = "sent_at IS NULL AND text_body <> '' AND (attempts >= ? \
                           OR (kind = ? AND created_at <= ?) OR (kind = ? AND created_at <= ?))";
    let (verify, reset) = (Kind::VerifyEmail, Kind::ResetPassword);
    let expired = [
        integer(MAX_ATTEMPTS),
        text(verify.as_str()),
        integer(now - verify.token_lifetime()),
        text(reset.as_str()),
        integer(now - reset.token_lifetime()),
    ];
    // Claims run every second on every host (and after every request on Spin): look
    // before writing, so that the common case takes no write lock.
    let select = format!("SELECT id FROM outbox WHERE {EXPIRED} LIMIT 1");
    if app.db.query_one(&select, &expired)?.is_none() {
        return Ok(());
    }
    let update = format!(
        "UPDATE outbox SET text_body = '', html_body = '', \
         attempts = CASE WHEN attempts < ? THEN ? ELSE attempts END WHERE {EXPIRED}"
    );
    let params = [
        vec![integer(MAX_ATTEMPTS), integer(MAX_ATTEMPTS)],
        expired.to_vec(),
    ]
    .concat();
    app.db.execute(&update, &params)?;
    Ok(())
}

/// Records a delivery; the bodies (and the token in their link) are erased.
pub fn sent(app: &App<'_>, id: &str, claim: &str) -> Result<(), Error> {
    app.db.execute(
        "UPDATE outbox SET sent_at = ?, text_body = '', html_body = '', claimed_until = NULL \
         WHERE id = ? AND claim = ?",
        &[integer(app.now()), text(id), text(claim)],
    )?;
    Ok(())
}

/// Records a failed attempt and schedules the next one (30 s, 60 s, … at most an hour).
pub fn failed(app: &App<'_>, id: &str, claim: &str, reason: &str) -> Result<(), Error> {
    let row = app.db.query_one(
        "SELECT attempts FROM outbox WHERE id = ? AND claim = ?",
        &[text(id), text(claim)],
    )?;
    let Some(row) = row else {
        return Ok(());
    };
    let attempts = row.integer(0)? + 1;
    let backoff = FIRST_BACKOFF_SECONDS
        .saturating_mul(1_i64 << (attempts - 1).clamp(0, 20))
        .min(MAX_BACKOFF_SECONDS);
    let reason: String = reason.chars().take(MAX_ERROR_CHARS).collect();
    // The last attempt failed: the mail is given up, and its token with it.
    let bodies = if attempts >= MAX_ATTEMPTS {
        ", text_body = '', html_body = ''"
    } else {
        ""
    };
    app.db.execute(
        &format!(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, \
             claimed_until = NULL{bodies} WHERE id = ? AND claim = ?"
        ),
        &[
            integer(attempts),
            integer(app.now() + backoff),
            text(reason),
            text(id),
            text(claim),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    fn queue(harness: &Harness, address: &str) {
        let app = harness.app();
        app.db
            .batch(vec![compose(
                &app,
                Kind::VerifyEmail,
                address,
                "<john>",
                "TOKEN",
            )])
            .unwrap();
    }

    #[test]
    fn mails_link_to_the_public_url_and_escape_html() {
        let harness = Harness::new(&[("public_url", "https://auth.example.com/")]);
        queue(&harness, "john@example.com");
        let mail = claim(&harness.app(), 10, 60).unwrap().remove(0);
        assert!(
            mail.text_body
                .contains("https://auth.example.com/verify-email?token=TOKEN")
        );
        assert!(mail.html_body.contains("&lt;john&gt;"));
        assert_eq!(mail.to, "john@example.com");
    }

    #[test]
    fn a_claimed_mail_is_not_handed_out_twice_and_sent_mail_is_erased() {
        let harness = Harness::new(&[]);
        queue(&harness, "john@example.com");
        let app = harness.app();
        let first = claim(&app, 10, 60).unwrap();
        assert_eq!(first.len(), 1);
        assert!(claim(&app, 10, 60).unwrap().is_empty(), "leased");
        sent(&app, &first[0].id, &first[0].claim).unwrap();
        harness.env.advance(120);
        assert!(claim(&app, 10, 60).unwrap().is_empty(), "sent");
        let bodies = app
            .db
            .query_one("SELECT text_body FROM outbox", &[])
            .unwrap()
            .unwrap();
        assert_eq!(bodies.text(0).unwrap(), "");
    }

    #[test]
    fn failures_are_retried_with_backoff_and_an_expired_lease_frees_the_mail() {
        let harness = Harness::new(&[]);
        queue(&harness, "john@example.com");
        let app = harness.app();
        let mail = claim(&app, 10, 60).unwrap().remove(0);
        failed(&app, &mail.id, &mail.claim, "connection refused").unwrap();
        assert!(claim(&app, 10, 60).unwrap().is_empty(), "backing off");
        harness.env.advance(30);
        let retry = claim(&app, 10, 60).unwrap().remove(0);
        assert_eq!(retry.attempts, 1);
        harness.env.advance(61);
        assert_eq!(claim(&app, 10, 60).unwrap().len(), 1, "lease ran out");
    }

    #[test]
    fn mails_to_one_address_are_throttled() {
        let harness = Harness::new(&[]);
        let app = harness.app();
        assert!(may_send(&app, "john@example.com", Kind::ResetPassword, "u1").unwrap());
        app.db
            .batch(vec![compose(
                &app,
                Kind::ResetPassword,
                "john@example.com",
                "j",
                "T",
            )])
            .unwrap();
        assert!(!may_send(&app, "john@example.com", Kind::ResetPassword, "u1").unwrap());
        assert!(may_send(&app, "john@example.com", Kind::VerifyEmail, "u1").unwrap());
        harness.env.advance(60);
        assert!(may_send(&app, "john@example.com", Kind::ResetPassword, "u1").unwrap());
    }
}
