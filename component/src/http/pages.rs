//! The two small HTML pages that mail links open (API.md §6): `/verify-email` and
//! `/reset-password`. A `GET` only shows a form, and only while its token is live (mail
//! scanners that fetch links must not spend tokens); the form's `POST` spends the token.
//! The pages carry a strict Content-Security-Policy (no script at all; only their own
//! inline style, by hash).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::handlers::Context;
use super::{Body, Request, Response};
use crate::account;
use crate::error::Error;
use crate::mail::escape_html;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;\
padding:0 1rem;line-height:1.5}input,button{font:inherit;padding:.5rem;width:100%;\
box-sizing:border-box;margin:.25rem 0}.error{color:#b00020}";

/// One page: a title and trusted HTML for its body.
fn page(status: u16, title: &str, body: &str) -> Response {
    let style_hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>{body}\
         </body></html>"
    );
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            (
                "content-security-policy".into(),
                format!(
                    "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; \
                     base-uri 'none'; frame-ancestors 'none'"
                ),
            ),
            ("x-frame-options".into(), "DENY".into()),
        ],
        body: html.into_bytes(),
    }
}

fn message(status: u16, title: &str, text: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", escape_html(text)))
}

/// The `token` of the query string.
fn query_token(request: &Request) -> String {
    request.query_param("token").unwrap_or_default()
}

/// The fields of a posted form.
fn form(context: &Context<'_>) -> Result<Vec<(String, String)>, Error> {
    match &context.request.body {
        Body::TooLarge => Err(Error::PayloadTooLarge {
            limit: context.app.settings.max_body_bytes,
        }),
        Body::Complete(bytes) => Ok(form_urlencoded::parse(bytes).into_owned().collect()),
    }
}

/// The verification form.
#[derive(ToSchema)]
pub struct VerifyEmailForm {
    pub token: String,
}

/// The reset form.
#[derive(ToSchema)]
pub struct ResetPasswordForm {
    pub token: String,
    #[schema(max_length = 128)]
    pub new_password: String,
    /// Must equal `new_password`.
    #[schema(max_length = 128)]
    pub confirm_password: String,
}

impl ResetPasswordForm {
    fn read(fields: &[(String, String)]) -> Self {
        ResetPasswordForm {
            token: field(fields, "token"),
            new_password: field(fields, "new_password"),
            confirm_password: field(fields, "confirm_password"),
        }
    }
}

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

/// What a verification link's page says once its token is no longer live.
const SPENT_VERIFICATION_LINK: &str = "This verification link is invalid, expired or already used.";
/// What a reset link's page says once its token is no longer live.
const SPENT_RESET_LINK: &str = "This reset link is invalid, expired or already used.";

fn hidden_token(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"token\" value=\"{}\">",
        escape_html(token)
    )
}

/// The page a verification link opens: a form that spends the token when submitted,
/// or, when the token is no longer live, a page that says so (and no form).
#[utoipa::path(get, path = "/verify-email", tag = "pages", operation_id = "verify_email_page",
    params(("token" = Option<String>, Query, description = "The token of the mailed link.")),
    responses(
        (status = 200, description = "The form.", content_type = "text/html"),
        (status = 400, description = "The link has no token, or it is invalid, expired or \
            used.", content_type = "text/html"),
    ))]
pub fn verify_email_form(context: &Context<'_>) -> Result<Response, Error> {
    let token = query_token(context.request);
    if token.is_empty() {
        return Ok(message(
            400,
            "Verify your email address",
            "This link has no token.",
        ));
    }
    if !account::verification_token_is_live(context.app, &token)? {
        return Ok(message(400, "Link not valid", SPENT_VERIFICATION_LINK));
    }
    Ok(page(
        200,
        "Verify your email address",
        &format!(
            "<form method=\"post\" action=\"/verify-email\">{}\
             <button type=\"submit\">Verify my email address</button></form>",
            hidden_token(&token)
        ),
    ))
}

/// The verification form's submission: spends the token.
#[utoipa::path(post, path = "/verify-email", tag = "pages", operation_id = "verify_email_page_submit",
    request_body(content = VerifyEmailForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Verified.", content_type = "text/html"),
        (status = 400, description = "The token is invalid, expired or used.",
            content_type = "text/html"),
        (status = 413, description = "`payload_too_large`."),
    ))]
pub fn verify_email(context: &Context<'_>) -> Result<Response, Error> {
    let form = VerifyEmailForm {
        token: field(&form(context)?, "token"),
    };
    match account::verify_email(context.app, &form.token, &context.client(None)) {
        Ok(user) => Ok(message(
            200,
            "Email address verified",
            &format!(
                "Thank you, {}: your email address is verified.",
                user.username
            ),
        )),
        Err(Error::InvalidVerificationToken) => {
            Ok(message(400, "Link not valid", SPENT_VERIFICATION_LINK))
        }
        Err(other) => Err(other),
    }
}

fn reset_form(token: &str, errors: &[String]) -> String {
    let errors: String = errors
        .iter()
        .map(|error| format!("<p class=\"error\">{}</p>", escape_html(error)))
        .collect();
    format!(
        "{errors}<form method=\"post\" action=\"/reset-password\">{}\
         <label>New password<input type=\"password\" name=\"new_password\" \
         autocomplete=\"new-password\" required maxlength=\"128\"></label>\
         <label>Repeat it<input type=\"password\" name=\"confirm_password\" \
         autocomplete=\"new-password\" required maxlength=\"128\"></label>\
         <button type=\"submit\">Set the new password</button></form>",
        hidden_token(token)
    )
}

/// The page a password-reset link opens: a form for the new password, or, when the
/// token is no longer live, a page that says so (and no form).
#[utoipa::path(get, path = "/reset-password", tag = "pages", operation_id = "reset_password_page",
    params(("token" = Option<String>, Query, description = "The token of the mailed link.")),
    responses(
        (status = 200, description = "The form.", content_type = "text/html"),
        (status = 400, description = "The link has no token, or it is invalid, expired or \
            used.", content_type = "text/html"),
    ))]
pub fn reset_password_form(context: &Context<'_>) -> Result<Response, Error> {
    let token = query_token(context.request);
    if token.is_empty() {
        return Ok(message(
            400,
            "Reset your password",
            "This link has no token.",
        ));
    }
    if !account::reset_token_is_live(context.app, &token)? {
        return Ok(message(400, "Link not valid", SPENT_RESET_LINK));
    }
    Ok(page(200, "Reset your password", &reset_form(&token, &[])))
}

/// The reset form's submission: spends the token and sets the password.
#[utoipa::path(post, path = "/reset-password", tag = "pages", operation_id = "reset_password_page_submit",
    request_body(content = ResetPasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The password is changed.", content_type = "text/html"),
        (status = 400, description = "The token is invalid, expired or used.",
            content_type = "text/html"),
        (status = 413, description = "`payload_too_large`."),
        (status = 422, description = "The form again, with what to fix (the passwords \
            differ, or the password breaks a rule).", content_type = "text/html"),
    ))]
pub fn reset_password(context: &Context<'_>) -> Result<Response, Error> {
    let ResetPasswordForm {
        token,
        new_password,
        confirm_password,
    } = ResetPasswordForm::read(&form(context)?);
    if new_password != confirm_password {
        let errors = ["The two passwords differ.".to_string()];
        return Ok(page(
            422,
            "Reset your password",
            &reset_form(&token, &errors),
        ));
    }
    match account::reset_password(context.app, &token, &new_password, &context.client(None)) {
        Ok(()) => Ok(message(
            200,
            "Password changed",
            "Your password was changed and every session was signed out. Sign in again.",
        )),
        Err(Error::InvalidResetToken) => Ok(message(400, "Link not valid", SPENT_RESET_LINK)),
        Err(Error::Validation(errors)) => {
            let messages: Vec<String> = errors.into_iter().map(|error| error.message).collect();
            Ok(page(
                422,
                "Reset your password",
                &reset_form(&token, &messages),
            ))
        }
        Err(other) => Err(other),
    }
}
