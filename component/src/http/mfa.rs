//! The endpoints of two-factor authentication (API.md §8): enrolment, confirmation,
//! recovery codes and turning it off for the signed-in user, the second step of a login,
//! and an admin's switch. The rules are in `crate::mfa`.

use super::Response;
use super::body::json_object;
use super::handlers::{Context, admin, path_id};
use super::model::{
    DisableMfaRequest, EnrolTotpRequest, MfaCodeRequest, MfaVerifyRequest, RecoveryCodes,
    TokenResponse, TotpEnrolment,
};
use crate::error::Error;
use crate::mfa;

/// Starts a TOTP enrolment; the password confirms.
///
/// Answers the secret, its `otpauth://` URI and a QR code of it, shown this once. Not
/// active until confirmed with a first code; calling again replaces a pending enrolment.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp", tag = "mfa",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = EnrolTotpRequest,
    responses(
        (status = 200, description = "A pending enrolment.", body = TotpEnrolment),
        (status = 401, description = "`invalid_credentials` (wrong password, counted as a \
            failed login), or no valid token."),
        (status = 409, description = "`mfa_already_enabled`."),
        (status = 429, description = "`rate_limited`: too many failed logins."),
    ))]
pub fn enrol_totp(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = EnrolTotpRequest::read(&mut body)?;
    let enrolment = mfa::enrol(app, &who, &request.password, &context.client(None))?;
    Ok(Response::json(
        200,
        &TotpEnrolment {
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
            qr_svg: enrolment.qr_svg,
        },
    ))
}

/// Confirms the pending enrolment with a first code: two-factor authentication is on.
///
/// Answers ten recovery codes, shown this once.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp/confirm", tag = "mfa",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = MfaCodeRequest,
    responses(
        (status = 200, description = "MFA is on.", body = RecoveryCodes),
        (status = 400, description = "`invalid_mfa_code` (counted as a failed login), or \
            `invalid_json`."),
        (status = 409, description = "`mfa_not_pending`: no enrolment waits."),
        (status = 429, description = "`rate_limited`: too many failed logins."),
    ))]
pub fn confirm_totp(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = MfaCodeRequest::read(&mut body)?;
    let recovery_codes = mfa::confirm(app, &who, &request.code, &context.client(None))?;
    Ok(Response::json(200, &RecoveryCodes { recovery_codes }))
}

/// Replaces the recovery codes; a code (TOTP or recovery) confirms.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/recovery-codes", tag = "mfa",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = MfaCodeRequest,
    responses(
        (status = 200, description = "Ten new codes; the old ones stop working.",
            body = RecoveryCodes),
        (status = 400, description = "`invalid_mfa_code` (counted as a failed login), or \
            `invalid_json`."),
        (status = 409, description = "`mfa_not_enabled`."),
        (status = 429, description = "`rate_limited`: too many failed logins."),
    ))]
pub fn regenerate_recovery_codes(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = MfaCodeRequest::read(&mut body)?;
    let recovery_codes =
        mfa::regenerate_recovery_codes(app, &who, &request.code, &context.client(None))?;
    Ok(Response::json(200, &RecoveryCodes { recovery_codes }))
}

/// Turns two-factor authentication off; the password and a code confirm.
#[utoipa::path(delete, path = "/api/v1/users/me/mfa", tag = "mfa",
    security(("bearer" = []), ("oauth2" = [])),
    request_body = DisableMfaRequest,
    responses(
        (status = 204, description = "MFA is off."),
        (status = 400, description = "`invalid_mfa_code` (counted as a failed login), or \
            `invalid_json`."),
        (status = 401, description = "`invalid_credentials` (wrong password, counted as a \
            failed login), or no valid token."),
        (status = 409, description = "`mfa_not_enabled`."),
        (status = 429, description = "`rate_limited`: too many failed logins."),
    ))]
pub fn disable_mfa(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = DisableMfaRequest::read(&mut body)?;
    mfa::disable(
        app,
        &who,
        &request.password,
        &request.code,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// The second step of a login with two-factor authentication.
///
/// Trades the `mfa_token` of the login's 403 `mfa_required` answer and a code (TOTP or
/// recovery) for the token response; the session opens now, under the device limit.
/// Five wrong codes spend the `mfa_token`; wrong codes count as failed logins.
#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "auth",
    request_body = MfaVerifyRequest,
    responses(
        (status = 200, description = "Logged in; the access token's `amr` is \
            `[\"pwd\",\"otp\",\"mfa\"]`.", body = TokenResponse),
        (status = 401, description = "`invalid_mfa_token` (unknown, expired or spent: log \
            in again) or `invalid_mfa_code`."),
        (status = 409, description = "`session_limit_reached` (policy `reject`)."),
    ))]
pub fn mfa_verify(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let request = MfaVerifyRequest::read(&mut body)?;
    let client = context.client(request.device_name);
    let grant = mfa::verify(app, &request.mfa_token, &request.code, &client)?;
    Ok(Response::json(200, &TokenResponse::from(&grant)))
}

/// Turns a user's two-factor authentication off (admin).
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}/mfa", tag = "admin",
    security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "A user id.")),
    responses(
        (status = 204, description = "That user's MFA is off (a pending enrolment is \
            dropped too)."),
        (status = 403, description = "`forbidden`: not an admin."),
        (status = 404, description = "`not_found`."),
    ))]
pub fn admin_disable_mfa(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    mfa::admin_disable(
        context.app,
        &actor,
        path_id(context)?,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}
