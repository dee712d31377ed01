//! `GET /openapi.json`: the OpenAPI 3.1 document, built from the route table. Each
//! method of each route names its description (a `#[utoipa::path]` on its handler); this
//! module puts them under the route's pattern, adds the answers every endpoint of a kind
//! can give (problems for bad bodies, missing tokens, rate limits, an unreachable
//! database), the schemas, the security schemes, and the endpoints the host serves
//! itself (`/metrics`, marked `x-portcullis-served-by: host`).

use utoipa::OpenApi;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem, Paths};
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes,
    SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Content, ContentBuilder, InfoBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder,
};

use super::handlers::Context;
use super::model::{
    Accepted, AdminUserChange, AuditEvent, AuditPage, ChangePasswordRequest, DeleteAccountRequest,
    DisableMfaRequest, EnrolTotpRequest, FieldError, ForgotPasswordRequest, Health, HealthProblem,
    ImportRejected, ImportReport, ImportSkipped, Jwk, Jwks, LoginRequest, MfaCodeRequest,
    MfaVerifyRequest, OAuthError, OAuthMfaRequired, OAuthToken, Problem, ProfileUpdate,
    RecoveryCodes, RefreshRequest, RegisterRequest, Registered, ResetPasswordRequest, Session,
    SessionList, TokenForm, TokenInfo, TokenResponse, TotpEnrolment, User, UserPage,
    ValidationRules, VerifyEmailRequest,
};
use super::pages::{ResetPasswordForm, VerifyEmailForm};
use super::problem::PROBLEM_JSON;
use super::{Response, cookies, router};
use crate::error::Error;

/// The OpenAPI description of one endpoint, as its `#[utoipa::path]` gives it.
pub struct Description {
    /// The path the description names; it must be the route's pattern.
    pub path: String,
    pub methods: Vec<HttpMethod>,
    pub operation: Operation,
}

/// Gives the description of one endpoint.
pub type Describe = fn() -> Description;

/// The description of the endpoint whose `#[utoipa::path]` generated `P`.
pub fn described<P: utoipa::Path>() -> Description {
    Description {
        path: P::path(),
        methods: P::methods(),
        operation: P::operation(),
    }
}

/// The tag of the endpoints that describe the API itself (no database behind them).
const DOCUMENTATION_TAG: &str = "documentation";

/// How clients keep a session (README, "How clients keep a session").
const INTRODUCTION: &str = "\
Portcullis: registration, login, JWT access tokens with rotating refresh tokens, \
device-limited sessions, email verification, password reset, an audit log.

Errors are RFC 9457 problems (`application/problem+json`) with a stable `code`; \
validation errors (422) list every broken rule in `errors`.

## How clients keep a session

- Send the access token as `Authorization: Bearer …`. It lives `expires_in` seconds \
(`PORTCULLIS_ACCESS_TTL`) and stops working at once when its session is revoked \
(logout, revocation, password change or reset, deactivation).
- Before it expires (or on a 401 `invalid_token`), `POST /api/v1/auth/refresh` \
`{\"refresh_token\": …}`. Every refresh returns a **new** refresh token: store it and \
forget the old one, refresh tokens are single-use. Presenting a spent one again answers \
401 `refresh_token_reused` and revokes the whole session; the user must log in again. \
Two tabs refreshing at once: serialise refreshes in the client, or set \
`PORTCULLIS_REFRESH_REUSE_GRACE` (seconds during which a just-spent token gets the same \
successor).
- OAuth2 clients can use `POST /api/v1/auth/token` (`grant_type=password` or \
`grant_type=refresh_token`, form-encoded, RFC 6749 answers); the \"Authorize\" button of \
`/docs` uses it.
- With `PORTCULLIS_JWT_ALGORITHM=EdDSA`, resource servers verify tokens themselves with \
the keys at `/.well-known/jwks.json` (by `kid`).";

/// Every schema the descriptions refer to.
#[derive(OpenApi)]
#[openapi(components(schemas(
    Accepted,
    AdminUserChange,
    AuditEvent,
    AuditPage,
    ChangePasswordRequest,
    DeleteAccountRequest,
    DisableMfaRequest,
    EnrolTotpRequest,
    FieldError,
    ForgotPasswordRequest,
    Health,
    HealthProblem,
    ImportRejected,
    ImportReport,
    ImportSkipped,
    Jwk,
    Jwks,
    LoginRequest,
    MfaCodeRequest,
    MfaVerifyRequest,
    OAuthError,
    OAuthMfaRequired,
    OAuthToken,
    Problem,
    ProfileUpdate,
    RecoveryCodes,
    RefreshRequest,
    RegisterRequest,
    Registered,
    ResetPasswordForm,
    ResetPasswordRequest,
    Session,
    SessionList,
    TokenForm,
    TokenInfo,
    TokenResponse,
    TotpEnrolment,
    User,
    UserPage,
    ValidationRules,
    VerifyEmailForm,
    VerifyEmailRequest,
)))]
struct Schemas;

/// The whole document. Fails when a description names another path than its route.
pub fn document() -> Result<Document, Error> {
    let mut paths = Paths::new();
    for (pattern, method, describe) in router::endpoints() {
        let description = describe();
        if description.path != pattern {
            return Err(Error::Internal(format!(
                "the description of {method} {pattern} names {}",
                description.path
            )));
        }
        let operation = complete(description.operation, pattern, method);
        paths.add_path_operation(pattern, description.methods, operation);
    }
    paths.paths.insert("/metrics".into(), metrics());
    let mut document = Schemas::openapi();
    document.info = InfoBuilder::new()
        .title("Portcullis")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(INTRODUCTION))
        .build();
    document.paths = paths;
    if let Some(components) = document.components.as_mut() {
        components.add_security_scheme("bearer", bearer("JWT", "An access token."));
        components.add_security_scheme("oauth2", oauth2());
        components.add_security_scheme(REFRESH_COOKIE_SCHEME, refresh_cookie());
        components.add_security_scheme(
            "metrics_token",
            bearer("token", "`PORTCULLIS_METRICS_TOKEN`."),
        );
    }
    Ok(document)
}

/// `GET /openapi.json`
#[utoipa::path(get, path = "/openapi.json", tag = "documentation", responses(
    (status = 200, description = "This OpenAPI 3.1 document.", content_type = "application/json"),
))]
pub fn openapi_json(_: &Context<'_>) -> Result<Response, Error> {
    let json = document()?
        .to_json()
        .map_err(|error| Error::Internal(format!("OpenAPI document: {error}")))?;
    Ok(Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json.into_bytes(),
    })
}

fn bearer(format: &str, description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format(format)
            .description(Some(description))
            .build(),
    )
}

/// The OAuth2 password flow of `POST /api/v1/auth/token` (with refresh).
fn oauth2() -> SecurityScheme {
    let token_url = "/api/v1/auth/token";
    let flow = Password::with_refresh_url(token_url, Scopes::new(), token_url);
    SecurityScheme::OAuth2(OAuth2::with_description(
        [Flow::Password(flow)],
        "Log in with a username (or email, or mobile number) and password.",
    ))
}

/// The security scheme of the refresh cookie (cookie sessions).
const REFRESH_COOKIE_SCHEME: &str = "refresh_cookie";

/// The refresh cookie of a browser session, with the CSRF header it needs.
fn refresh_cookie() -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
        cookies::REFRESH_COOKIE,
        "Cookie sessions (`PORTCULLIS_COOKIE_SESSIONS`): the HttpOnly refresh cookie a \
         login with `X-Portcullis-Session: cookie` set. Requests it authenticates must \
         repeat the `portcullis_csrf` cookie in `X-CSRF-Token` (else 403 `csrf_failed`).",
    )))
}

/// A header parameter of type string, not required.
fn header_parameter(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// Adds the headers, the cookie alternative and the `csrf_failed` answer of cookie
/// sessions to the endpoints that take part in them.
fn with_cookie_sessions(mut operation: Operation, pattern: &str) -> Operation {
    let mut parameters = Vec::new();
    if cookies::TOKEN_ENDPOINTS.contains(&pattern) {
        parameters.push(header_parameter(
            "X-Portcullis-Session",
            "`cookie`: with `PORTCULLIS_COOKIE_SESSIONS`, the refresh token goes into the \
             HttpOnly `portcullis_refresh` cookie instead of the body, and a \
             `portcullis_csrf` cookie is set for `X-CSRF-Token`.",
        ));
    }
    if cookies::COOKIE_AUTHENTICATED.contains(&pattern) {
        parameters.push(header_parameter(
            "X-CSRF-Token",
            "The `portcullis_csrf` cookie's value, when the refresh cookie authenticates \
             the request (a refresh with an empty body or `{}`, a logout without a bearer \
             token).",
        ));
        operation
            .security
            .get_or_insert_with(|| vec![SecurityRequirement::default()])
            .push(SecurityRequirement::new(
                REFRESH_COOKIE_SCHEME,
                Vec::<String>::new(),
            ));
        let csrf_failed = "`csrf_failed`: authenticated by the refresh cookie, but \
                           `X-CSRF-Token` is missing or not the `portcullis_csrf` cookie's \
                           value.";
        let forbidden = operation
            .responses
            .responses
            .entry("403".to_string())
            .or_insert_with(|| ResponseBuilder::new().into());
        if let RefOr::T(response) = forbidden {
            response.description = match response.description.as_str() {
                "" => csrf_failed.to_string(),
                other => format!("{other} Or {csrf_failed}"),
            };
        }
    }
    if !parameters.is_empty() {
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .extend(parameters);
    }
    operation
}

/// Adds to `operation` the answers that every endpoint of its kind can give.
fn complete(mut operation: Operation, pattern: &str, method: &str) -> Operation {
    let takes_json = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"));
    let authenticated = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let documentation = operation
        .tags
        .as_ref()
        .is_some_and(|tags| tags.iter().any(|tag| tag == DOCUMENTATION_TAG));
    let mut common: Vec<(&str, &str)> = Vec::new();
    if takes_json {
        common.extend([
            ("400", "`invalid_json`: the body is not a JSON object."),
            ("413", "`payload_too_large`: see `max_body_bytes`."),
            (
                "415",
                "`unsupported_media_type`: the body must be `application/json`.",
            ),
            (
                "422",
                "`validation_failed`: every broken rule is listed in `errors`.",
            ),
        ]);
    }
    if authenticated {
        common.push((
            "401",
            "`unauthorized` (no bearer token) or `invalid_token` (malformed, forged, \
             expired or revoked); carries `WWW-Authenticate`.",
        ));
    }
    if router::is_rate_limited(method, pattern) {
        common.push((
            "429",
            "`rate_limited`: too many requests from this address (or failed logins on \
             this account); see `Retry-After`.",
        ));
    }
    if !documentation {
        common.push(("503", "`unavailable`: the database cannot be reached."));
    }
    if router::hashes_password(method, pattern) {
        operation
            .extensions
            .get_or_insert_with(Default::default)
            .insert(
                router::HASHES_PASSWORD.to_string(),
                serde_json::Value::Bool(true),
            );
    }
    let mut operation = with_cookie_sessions(operation, pattern);
    let responses = &mut operation.responses.responses;
    for (status, description) in common {
        responses
            .entry(status.to_string())
            .or_insert_with(|| ResponseBuilder::new().description(description).into());
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.content.is_empty()
            && status.starts_with(['4', '5'])
        {
            response
                .content
                .insert(PROBLEM_JSON.to_string(), problem_content());
        }
    }
    operation
}

fn problem_content() -> Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

/// `GET /metrics`, which the native host serves itself (when
/// `PORTCULLIS_METRICS_TOKEN` is set; 404 otherwise).
fn metrics() -> PathItem {
    let served_by_host = || {
        Some(
            ExtensionsBuilder::new()
                .add("x-portcullis-served-by", "host")
                .build(),
        )
    };
    let operation = OperationBuilder::new()
        .tag("service")
        .operation_id(Some("metrics"))
        .summary(Some("Prometheus metrics (served by the native host)."))
        .security(SecurityRequirement::new(
            "metrics_token",
            Vec::<String>::new(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("Prometheus text format.")
                .content("text/plain", ContentBuilder::new().build()),
        )
        .response(
            "401",
            ResponseBuilder::new().description("The metrics token is missing or wrong."),
        )
        .response(
            "404",
            ResponseBuilder::new()
                .description("`not_found`: no metrics token is set.")
                .content(PROBLEM_JSON, problem_content()),
        )
        .extensions(served_by_host())
        .build();
    let mut item = PathItem::new(HttpMethod::Get, operation);
    item.extensions = served_by_host();
    item
}

#[cfg(test)]
mod tests;
