//! `POST /api/v1/auth/token`: the OAuth2 `password` and `refresh_token` grants with the
//! request and answer formats of RFC 6749 §4.3, §6 and §5.1–5.2, so standard OAuth2
//! clients (and the docs page's "Authorize" button) work.

use super::model::{OAuthError as ErrorBody, OAuthMfaRequired, OAuthToken, TokenForm};
use super::{Body, Request, Response, header};
use crate::app::App;
use crate::auth;
use crate::error::Error;
use crate::refresh;
use crate::sessions::{Client, Grant};

/// RFC 6749 §5.2 error codes.
enum OAuthError {
    InvalidRequest(&'static str),
    InvalidGrant(&'static str),
    UnsupportedGrantType,
    /// A correct password of an account with two-factor authentication (API.md §8): 403
    /// with the `mfa_token` of the second step.
    MfaRequired(String),
}

/// Answers a token request. Problems that are not about the grant (a body over the
/// limit, rate limits, an unreachable database) stay problem answers.
pub fn token(app: &App<'_>, request: &Request, client: &Client) -> Result<Response, Error> {
    let bytes = match &request.body {
        Body::TooLarge => {
            return Err(Error::PayloadTooLarge {
                limit: app.settings.max_body_bytes,
            });
        }
        Body::Complete(bytes) => bytes,
    };
    match grant(app, request, bytes, client) {
        Ok(grant) => Ok(success(&grant)),
        Err(Outcome::OAuth(error)) => Ok(failure(&error)),
        Err(Outcome::Problem(error)) => Err(error),
    }
}

enum Outcome {
    OAuth(OAuthError),
    Problem(Error),
}

impl From<OAuthError> for Outcome {
    fn from(error: OAuthError) -> Self {
        Outcome::OAuth(error)
    }
}

fn grant(
    app: &App<'_>,
    request: &Request,
    bytes: &[u8],
    client: &Client,
) -> Result<Grant, Outcome> {
    if !is_form(request.header(header::CONTENT_TYPE)) {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
    let param = |name: &str| -> Result<Option<&str>, OAuthError> {
        let mut values = params.iter().filter(|(key, _)| key == name);
        let first = values.next().map(|(_, value)| value.as_str());
        match values.next() {
            Some(_) => Err(OAuthError::InvalidRequest("a parameter was repeated")),
            None => Ok(first.filter(|value| !value.is_empty())),
        }
    };
    let form = TokenForm {
        grant_type: param("grant_type")?
            .ok_or(OAuthError::InvalidRequest("grant_type is required"))?,
        username: param("username")?,
        password: param("password")?,
        refresh_token: param("refresh_token")?,
    };
    match form.grant_type {
        "password" => {
            let username = required(form.username, "username is required")?;
            let password = required(form.password, "password is required")?;
            auth::login(app, username, password, client).map_err(grant_error)
        }
        "refresh_token" => {
            let token = required(form.refresh_token, "refresh_token is required")?;
            refresh::refresh(app, token, client).map_err(grant_error)
        }
        _ => Err(OAuthError::UnsupportedGrantType.into()),
    }
}

/// A parameter the grant needs.
fn required<'v>(value: Option<&'v str>, missing: &'static str) -> Result<&'v str, OAuthError> {
    value.ok_or(OAuthError::InvalidRequest(missing))
}

fn is_form(value: Option<&str>) -> bool {
    value
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Grant failures become `invalid_grant`; everything else stays a problem answer.
fn grant_error(error: Error) -> Outcome {
    let description = match error {
        Error::InvalidCredentials => "the username or the password is wrong",
        Error::AccountDisabled => "the account is deactivated",
        Error::EmailNotVerified => "the email address is not verified",
        Error::SessionLimitReached => "the session limit is reached",
        Error::InvalidRefreshToken => "the refresh token is invalid, expired or revoked",
        Error::RefreshTokenReused => "the refresh token was already used; its session is revoked",
        Error::Validation(_) => return OAuthError::InvalidRequest("a parameter is invalid").into(),
        Error::MfaRequired { mfa_token } => return OAuthError::MfaRequired(mfa_token).into(),
        other => return Outcome::Problem(other),
    };
    OAuthError::InvalidGrant(description).into()
}

fn success(grant: &Grant) -> Response {
    Response::json(
        200,
        &OAuthToken {
            access_token: grant.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: grant.expires_in,
            refresh_token: grant.refresh_token.clone(),
        },
    )
    .with_header("pragma", "no-cache")
}

fn failure(error: &OAuthError) -> Response {
    if let OAuthError::MfaRequired(mfa_token) = error {
        let body = OAuthMfaRequired {
            error: "mfa_required",
            error_description: "a second factor is required: send a code with the mfa_token \
                                to /api/v1/auth/mfa/verify",
            mfa_token: mfa_token.clone(),
        };
        return Response::json(403, &body).with_header("pragma", "no-cache");
    }
    let (code, description) = match error {
        OAuthError::InvalidRequest(description) => ("invalid_request", *description),
        OAuthError::InvalidGrant(description) => ("invalid_grant", *description),
        OAuthError::UnsupportedGrantType => (
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        ),
        OAuthError::MfaRequired(_) => ("mfa_required", "a second factor is required"),
    };
    Response::json(
        400,
        &ErrorBody {
            error: code,
            error_description: description,
        },
    )
    .with_header("pragma", "no-cache")
}
