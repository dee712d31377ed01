//! Typed calls into the component's `portcullis:auth/api` (wit/api.wit): the start-up
//! settings check, mail delivery (`claim-mail`, `mail-sent`, `mail-failed`), key
//! rotation, admin creation, retention (`prune`, `count-rows`) and the user import
//! (`import-users`). Each call runs in an instance of its own.
//!
//! The Rust types here mirror the WIT records and variants the host uses; wasmtime
//! checks them against the component's when a function is looked up, and
//! [`check_types`] does so for every function at start-up, so that a change to the WIT
//! that the host does not follow stops start-up instead of failing later.

use std::fmt;
use std::marker::PhantomData;

use wasmtime::component::{ComponentNamedList, ComponentType, Lift, Lower};

use crate::instances::{ApiInstance, Instances};

/// A function of the API with the Rust types of its parameters and results.
struct ApiFunction<Params, Results> {
    name: &'static str,
    types: PhantomData<fn(Params) -> Results>,
}

impl<Params, Results> ApiFunction<Params, Results>
where
    Params: ComponentNamedList + Lower + Send + Sync,
    Results: ComponentNamedList + Lift + Send + Sync + 'static,
{
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            types: PhantomData,
        }
    }

    /// Calls the function in an instance of its own.
    async fn call(&self, instances: &Instances, params: Params) -> wasmtime::Result<Results> {
        instances
            .api_instance()
            .await?
            .call(self.name, params)
            .await
    }

    /// Fails when the component's function has other types.
    fn check(&self, instance: &mut ApiInstance) -> wasmtime::Result<()> {
        instance.typed_func::<Params, Results>(self.name).map(drop)
    }
}

/// The results of a function that returns `result<T, E>`.
type Returns<T, E = ApiError> = (Result<T, E>,);

const CHECK_SETTINGS: ApiFunction<(), Returns<(), Vec<String>>> =
    ApiFunction::new("check-settings");
const CLAIM_MAIL: ApiFunction<(u32, u32), Returns<Vec<Mail>>> = ApiFunction::new("claim-mail");
const MAIL_SENT: ApiFunction<(String, String), Returns<()>> = ApiFunction::new("mail-sent");
const MAIL_FAILED: ApiFunction<(String, String, String), Returns<()>> =
    ApiFunction::new("mail-failed");
const ROTATE_SIGNING_KEY: ApiFunction<(), Returns<String>> = ApiFunction::new("rotate-signing-key");
const CREATE_ADMIN: ApiFunction<(Registration, bool), Returns<Option<User>>> =
    ApiFunction::new("create-admin");
const PRUNE: ApiFunction<(u32, bool, u32), Returns<Pruned>> = ApiFunction::new("prune");
const COUNT_ROWS: ApiFunction<(), Returns<Vec<TableRows>>> = ApiFunction::new("count-rows");
const IMPORT_USERS: ApiFunction<(u32, Vec<Vec<u8>>), Returns<ImportReport>> =
    ApiFunction::new("import-users");

/// Checks that every function the host calls has the types the host expects.
pub async fn check_types(instances: &Instances) -> wasmtime::Result<()> {
    let mut instance = instances.api_instance().await?;
    CHECK_SETTINGS.check(&mut instance)?;
    CLAIM_MAIL.check(&mut instance)?;
    MAIL_SENT.check(&mut instance)?;
    MAIL_FAILED.check(&mut instance)?;
    ROTATE_SIGNING_KEY.check(&mut instance)?;
    CREATE_ADMIN.check(&mut instance)?;
    PRUNE.check(&mut instance)?;
    COUNT_ROWS.check(&mut instance)?;
    IMPORT_USERS.check(&mut instance)
}

/// What an account is registered with (`record registration`).
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
    #[component(name = "mobile-number")]
    pub mobile_number: Option<String>,
}

/// An account (`record user`); the host reads only what it reports.
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    #[component(name = "mobile-number")]
    pub mobile_number: Option<String>,
    #[component(name = "email-verified")]
    pub email_verified: bool,
    #[component(name = "is-active")]
    pub is_active: bool,
    #[component(name = "is-admin")]
    pub is_admin: bool,
    #[component(name = "created-at")]
    pub created_at: String,
    #[component(name = "updated-at")]
    pub updated_at: String,
}

/// A mail claimed for delivery (`record mail`).
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct Mail {
    /// The outbox id.
    pub id: String,
    /// Proves the claim; passed back with the outcome.
    pub claim: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body (it carries a token: log it only as the log mailer).
    #[component(name = "text-body")]
    pub text_body: String,
    /// The HTML body.
    #[component(name = "html-body")]
    pub html_body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// A table and a number of its rows (`record table-rows`).
#[derive(ComponentType, Lift, Clone, Debug, PartialEq, Eq)]
#[component(record)]
pub struct TableRows {
    /// The table's name.
    pub table: String,
    /// How many rows.
    pub rows: u64,
}

/// What one `prune` call did (`record pruned`).
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub struct Pruned {
    /// False when no round was due or another host ran one: nothing was done.
    pub ran: bool,
    /// The rows deleted, per table.
    pub removed: Vec<TableRows>,
    /// A rule filled its batch: another round is due at once.
    pub more: bool,
}

/// One rule a field broke (`record field-error`).
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct FieldError {
    /// The field's name.
    pub field: String,
    /// A stable code such as `too_short`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// Why an API call failed (`variant error`).
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(variant)]
pub enum ApiError {
    /// One or more fields broke the rules.
    #[component(name = "validation-failed")]
    ValidationFailed(Vec<FieldError>),
    /// The username is registered already.
    #[component(name = "username-taken")]
    UsernameTaken,
    /// The email address is registered already.
    #[component(name = "email-taken")]
    EmailTaken,
    /// The mobile number is registered already.
    #[component(name = "mobile-taken")]
    MobileTaken,
    /// Unknown account or wrong password.
    #[component(name = "invalid-credentials")]
    InvalidCredentials,
    /// Login refused until the email address is verified.
    #[component(name = "email-not-verified")]
    EmailNotVerified,
    /// The account was deactivated.
    #[component(name = "account-disabled")]
    AccountDisabled,
    /// The device limit is reached.
    #[component(name = "session-limit-reached")]
    SessionLimitReached,
    /// Too many attempts; retry after this many seconds.
    #[component(name = "rate-limited")]
    RateLimited(u32),
    /// The token is malformed, forged, expired or revoked.
    #[component(name = "invalid-token")]
    InvalidToken,
    /// The refresh token is unknown, expired or its session is gone.
    #[component(name = "invalid-refresh-token")]
    InvalidRefreshToken,
    /// A spent refresh token was presented again; its session is revoked.
    #[component(name = "refresh-token-reused")]
    RefreshTokenReused,
    /// No such account.
    #[component(name = "not-found")]
    NotFound,
    /// The caller may not do this (not an admin).
    #[component(name = "forbidden")]
    Forbidden,
    /// The database cannot be reached.
    #[component(name = "unavailable")]
    Unavailable(String),
    /// Anything else; the payload is for logs.
    #[component(name = "internal")]
    Internal(String),
    /// The password is right and two-factor login is on; the payload is the `mfa_token`.
    #[component(name = "mfa-required")]
    MfaRequired(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::ValidationFailed(errors) => {
                f.write_str("validation failed:")?;
                for error in errors {
                    write!(f, " {} {} ({});", error.field, error.code, error.message)?;
                }
                Ok(())
            }
            ApiError::UsernameTaken => f.write_str("the username is taken"),
            ApiError::EmailTaken => f.write_str("the email address is taken"),
            ApiError::MobileTaken => f.write_str("the mobile number is taken"),
            ApiError::InvalidCredentials => f.write_str("invalid credentials"),
            ApiError::EmailNotVerified => f.write_str("the email address is not verified"),
            ApiError::AccountDisabled => f.write_str("the account is disabled"),
            ApiError::SessionLimitReached => f.write_str("the session limit is reached"),
            ApiError::RateLimited(seconds) => write!(f, "rate limited for {seconds} s"),
            ApiError::InvalidToken => f.write_str("invalid token"),
            ApiError::InvalidRefreshToken => f.write_str("invalid refresh token"),
            ApiError::RefreshTokenReused => f.write_str("refresh token reused"),
            ApiError::NotFound => f.write_str("not found"),
            ApiError::Forbidden => f.write_str("forbidden"),
            ApiError::Unavailable(reason) => write!(f, "the database is unavailable: {reason}"),
            ApiError::Internal(reason) => write!(f, "internal error: {reason}"),
            ApiError::MfaRequired(_) => f.write_str("a second factor is required"),
        }
    }
}

impl std::error::Error for ApiError {}

/// What an API call gives: the host failed to make it (`Err`), or it was made and the
/// component answered (`Ok`, with the component's own `result`).
pub type Answer<T> = wasmtime::Result<Result<T, ApiError>>;

/// An [`Answer`] as one error: the host's or the component's.
pub fn answered<T>(answer: Answer<T>) -> anyhow::Result<T> {
    Ok(answer??)
}

/// `check-settings`: one line per bad setting, naming it.
pub async fn check_settings(instances: &Instances) -> wasmtime::Result<Result<(), Vec<String>>> {
    let (outcome,) = CHECK_SETTINGS.call(instances, ()).await?;
    Ok(outcome)
}

/// `claim-mail`: up to `max` due mails, leased for `lease_seconds`.
pub async fn claim_mail(instances: &Instances, max: u32, lease_seconds: u32) -> Answer<Vec<Mail>> {
    let (outcome,) = CLAIM_MAIL.call(instances, (max, lease_seconds)).await?;
    Ok(outcome)
}

/// `mail-sent`: the mail was delivered.
pub async fn mail_sent(instances: &Instances, mail: &Mail) -> Answer<()> {
    let params = (mail.id.clone(), mail.claim.clone());
    let (outcome,) = MAIL_SENT.call(instances, params).await?;
    Ok(outcome)
}

/// `mail-failed`: the delivery failed for `reason`; the component schedules a retry.
pub async fn mail_failed(instances: &Instances, mail: &Mail, reason: &str) -> Answer<()> {
    let params = (mail.id.clone(), mail.claim.clone(), reason.to_owned());
    let (outcome,) = MAIL_FAILED.call(instances, params).await?;
    Ok(outcome)
}

/// `create-admin`: the new admin, or `None` when `only_if_absent` found the account.
pub async fn create_admin(
    instances: &Instances,
    registration: Registration,
    only_if_absent: bool,
) -> Answer<Option<User>> {
    let (outcome,) = CREATE_ADMIN
        .call(instances, (registration, only_if_absent))
        .await?;
    Ok(outcome)
}

/// `rotate-signing-key`: the new key's `kid`.
pub async fn rotate_signing_key(instances: &Instances) -> Answer<String> {
    let (outcome,) = ROTATE_SIGNING_KEY.call(instances, ()).await?;
    Ok(outcome)
}

/// `prune`: one round of the retention rules, when due (or `force`) and no other host
/// runs one; at most `max_rows` rows per rule, as if `later_by` seconds ahead.
pub async fn prune(
    instances: &Instances,
    max_rows: u32,
    force: bool,
    later_by: u32,
) -> Answer<Pruned> {
    let (outcome,) = PRUNE.call(instances, (max_rows, force, later_by)).await?;
    Ok(outcome)
}

/// `count-rows`: the rows of each table the service grows.
pub async fn count_rows(instances: &Instances) -> Answer<Vec<TableRows>> {
    let (outcome,) = COUNT_ROWS.call(instances, ()).await?;
    Ok(outcome)
}

/// A line of a user import skipped because its user exists (`record import-skipped`).
#[derive(ComponentType, Lift, Clone, Debug, serde::Serialize)]
#[component(record)]
pub struct ImportSkipped {
    /// The line's number, from 1.
    pub line: u32,
    /// `username_taken`, `email_taken` or `mobile_taken`.
    pub code: String,
}

/// One problem of a rejected line (`record import-rejected`).
#[derive(ComponentType, Lift, Clone, Debug, serde::Serialize)]
#[component(record)]
pub struct ImportRejected {
    /// The line's number, from 1.
    pub line: u32,
    /// The field at fault; `None` when the line is not a JSON object.
    pub field: Option<String>,
    /// A stable code such as `unsupported_hash`.
    pub code: String,
}

/// What an import call did with its lines (`record import-report`).
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct ImportReport {
    /// How many lines became accounts.
    pub imported: u32,
    /// The lines whose user exists.
    pub skipped: Vec<ImportSkipped>,
    /// Every problem of the lines not imported.
    pub rejected: Vec<ImportRejected>,
}

/// `import-users`: imports `lines` (consecutive lines of a JSON Lines file, without
/// their line endings, the first being line `first_line`).
pub async fn import_users(
    instances: &Instances,
    first_line: u32,
    lines: Vec<Vec<u8>>,
) -> Answer<ImportReport> {
    let (outcome,) = IMPORT_USERS.call(instances, (first_line, lines)).await?;
    Ok(outcome)
}
