//! One function per endpoint: read the request, call the domain, shape the answer.

use serde_json::{Value, json};

use super::body::json_object;
use super::oauth;
use super::problem::problem;
use super::{Request, Response, header};
use crate::account::{self, ProfileChange};
use crate::admin;
use crate::app::{App, rfc3339};
use crate::auth::{self, Registered, Registration};
use crate::error::Error;
use crate::keys;
use crate::refresh;
use crate::sessions::{self, Authenticated, Client, Grant};
use crate::settings::{JwtAlgorithm, PASSWORD_MAX_LENGTH, PasswordPolicy};
use crate::validation;

/// What a handler gets.
pub struct Context<'a> {
    pub app: &'a App<'a>,
    pub request: &'a Request,
    /// The values of the route's `{…}` segments, in order.
    pub params: Vec<String>,
}

impl Context<'_> {
    pub fn client(&self, device_name: Option<String>) -> Client {
        let device_info = device_name
            .filter(|name| !name.trim().is_empty())
            .or_else(|| self.request.header(header::USER_AGENT).map(str::to_string));
        Client::new(
            device_info,
            self.request.client_ip(&self.app.settings.trusted_proxies),
        )
    }

    /// The bearer token's user and session, checked live.
    fn authenticate(&self) -> Result<Authenticated, Error> {
        let value = self
            .request
            .header(header::AUTHORIZATION)
            .ok_or(Error::Unauthorized)?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Unauthorized);
        }
        auth::verify_access_token(self.app, token.trim())
    }
}

/// `GET /health`
pub fn health(context: &Context<'_>) -> Result<Response, Error> {
    let version = env!("CARGO_PKG_VERSION");
    match context.app.db.query("SELECT 1", &[]) {
        Ok(_) => Ok(Response::json(
            200,
            &json!({"status": "ok", "database": "ok", "version": version}),
        )),
        Err(error) => {
            let mut answer = problem(&error);
            answer.status = 503;
            answer.body = json!({
                "type": "urn:portcullis:problem:unavailable",
                "title": "Service unavailable",
                "status": 503,
                "detail": "The database is unreachable.",
                "code": "unavailable",
                "database": "unavailable",
                "version": version,
            })
            .to_string()
            .into_bytes();
            Ok(answer)
        }
    }
}

/// `GET /.well-known/jwks.json`
pub fn jwks(context: &Context<'_>) -> Result<Response, Error> {
    Ok(Response::json(200, &keys::jwks(context.app)?))
}

/// `GET /api/v1/validation-rules`
pub fn validation_rules(context: &Context<'_>) -> Result<Response, Error> {
    let settings = context.app.settings;
    let complex = settings.password_policy == PasswordPolicy::Complex;
    let body = json!({
        "username": {
            "min_length": validation::USERNAME_MIN,
            "max_length": validation::USERNAME_MAX,
            "pattern": "^[A-Za-z0-9_]+$",
            "unique": "case_insensitive",
        },
        "email": {
            "max_length": validation::EMAIL_MAX,
            "stored_lowercase": true,
            "unique": true,
        },
        "mobile_number": {
            "required": false,
            "pattern": "^\\+?[0-9]{10,15}$",
            "ignored_characters": " -()",
            "unique": true,
        },
        "password": {
            "policy": if complex { "complex" } else { "nist" },
            "min_length": settings.password_min_length,
            "max_length": PASSWORD_MAX_LENGTH,
            "require_uppercase": complex,
            "require_lowercase": complex,
            "require_digit": complex,
            "require_special": complex,
            "ascii_only": complex,
            "common_password_check": true,
            "common_password_count": validation::common_password_count(),
            "disallow_identifiers": true,
        },
        "tokens": {
            "algorithm": match settings.jwt_algorithm {
                JwtAlgorithm::Hs256 => "HS256",
                JwtAlgorithm::EdDsa => "EdDSA",
            },
            "issuer": settings.jwt_issuer,
            "audience": settings.jwt_audience,
            "access_ttl": settings.access_ttl,
            "refresh_ttl": settings.refresh_ttl,
            "clock_skew": settings.clock_skew,
            "refresh_reuse_grace": settings.refresh_reuse_grace,
        },
        "sessions": {
            "max_sessions": settings.max_sessions,
            "limit_policy": match settings.session_limit_policy {
                crate::settings::SessionLimitPolicy::EvictOldest => "evict_oldest",
                crate::settings::SessionLimitPolicy::Reject => "reject",
            },
        },
        "require_email_verification": settings.require_email_verification,
        "max_body_bytes": settings.max_body_bytes,
    });
    Ok(Response::json(200, &body))
}

/// `POST /api/v1/auth/register`
pub fn register(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let input = Registration {
        username: body.string("username").unwrap_or_default(),
        email: body.string("email").unwrap_or_default(),
        password: body.string("password").unwrap_or_default(),
        mobile_number: body.string("mobile_number"),
    };
    if !body.type_errors.is_empty() {
        let mut errors = body.type_errors.clone();
        errors.extend(
            auth::check_registration(app, &input)
                .into_iter()
                .filter(|error| !body.is_mistyped(error.field)),
        );
        return Err(Error::Validation(errors));
    }
    match auth::register(app, &input, &context.client(None))? {
        Registered::SignedIn(grant) => {
            let mut answer = token_body(&grant);
            answer["verification_required"] = json!(false);
            Ok(Response::json(201, &answer))
        }
        Registered::VerificationRequired(user) => Ok(Response::json(
            201,
            &json!({"user": user.public(), "verification_required": true}),
        )),
    }
}

/// `POST /api/v1/auth/login`
pub fn login(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let login = body.string("login").unwrap_or_default();
    let password = body.string("password").unwrap_or_default();
    let device_name = body.string("device_name");
    if !body.type_errors.is_empty() {
        return Err(Error::Validation(body.type_errors));
    }
    let grant = auth::login(app, &login, &password, &context.client(device_name))?;
    Ok(Response::json(200, &token_body(&grant)))
}

/// `GET /api/v1/auth/verify`
pub fn verify(context: &Context<'_>) -> Result<Response, Error> {
    let authenticated = context.authenticate()?;
    let claims = &authenticated.claims;
    Ok(Response::json(
        200,
        &json!({
            "valid": true,
            "user_id": claims.sub,
            "username": authenticated.username,
            "session_id": claims.sid,
            "expires_at": rfc3339(claims.exp),
        }),
    ))
}

/// `GET /api/v1/users/me`
pub fn me(context: &Context<'_>) -> Result<Response, Error> {
    let authenticated = context.authenticate()?;
    let user =
        auth::get_user(context.app, &authenticated.claims.sub).map_err(|_| Error::InvalidToken)?;
    Ok(Response::json(200, &json!(user.public())))
}

/// `POST /api/v1/auth/refresh`
pub fn refresh(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let token =
        json_object(context.request, app.settings.max_body_bytes)?.required("refresh_token")?;
    let grant = refresh::refresh(app, &token, &context.client(None))?;
    Ok(Response::json(200, &token_body(&grant)))
}

/// `POST /api/v1/auth/token`: OAuth2 with its own error format (RFC 6749 §5).
pub fn token(context: &Context<'_>) -> Result<Response, Error> {
    oauth::token(context.app, context.request, &context.client(None))
}

/// `POST /api/v1/auth/logout`
pub fn logout(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    auth::logout(context.app, &who, &context.client(None))?;
    Ok(Response::empty(204))
}

/// `POST /api/v1/auth/logout-all`
pub fn logout_all(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    auth::logout_all(context.app, &who, &context.client(None))?;
    Ok(Response::empty(204))
}

/// `GET /api/v1/sessions`
pub fn list_sessions(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let sessions = sessions::list(context.app, &who.claims.sub, &who.claims.sid)?;
    Ok(Response::json(
        200,
        &json!({
            "session_count": sessions.len(),
            "sessions": sessions,
            "max_sessions": context.app.settings.max_sessions,
        }),
    ))
}

/// `DELETE /api/v1/sessions/{id}`
pub fn revoke_session(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let session_id = context.params.first().ok_or(Error::NotFound)?;
    auth::revoke_session(context.app, &who, session_id, &context.client(None))?;
    Ok(Response::empty(204))
}

/// The token response of API.md §3.
pub fn token_body(grant: &Grant) -> Value {
    json!({
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "refresh_token": grant.refresh_token,
        "refresh_expires_in": grant.refresh_expires_in,
        "session_id": grant.session_id,
        "user": grant.user.public(),
    })
}

/// `POST /api/v1/auth/email/verify-request`
pub fn verify_request(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    account::request_verification(context.app, &who, &context.client(None))?;
    Ok(Response::json(
        202,
        &json!({"status": "verification_mail_queued"}),
    ))
}

/// `POST /api/v1/auth/email/verify`
pub fn verify_email(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let token = json_object(context.request, app.settings.max_body_bytes)?.required("token")?;
    let user = account::verify_email(app, &token, &context.client(None))?;
    Ok(Response::json(200, &json!(user.public())))
}

/// `POST /api/v1/auth/password/forgot`
pub fn forgot_password(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let email = body.string("email").unwrap_or_default();
    body.check_types()?;
    account::forgot_password(app, &email, &context.client(None))?;
    Ok(Response::json(
        202,
        &json!({"status": "if_the_address_is_registered_a_reset_mail_is_on_its_way"}),
    ))
}

/// `POST /api/v1/auth/password/reset`
pub fn reset_password(context: &Context<'_>) -> Result<Response, Error> {
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let token = body.string("token").unwrap_or_default();
    let new_password = body.string("new_password").unwrap_or_default();
    body.check_types()?;
    account::reset_password(app, &token, &new_password, &context.client(None))?;
    Ok(Response::empty(204))
}

/// `PATCH /api/v1/users/me`
pub fn update_me(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let change = ProfileChange {
        username: body.change("username"),
        email: body.change("email"),
        mobile_number: body.change("mobile_number"),
    };
    body.check_types()?;
    let user = account::update_profile(app, &who, &change, &context.client(None))?;
    Ok(Response::json(200, &json!(user.public())))
}

/// `DELETE /api/v1/users/me`
pub fn delete_me(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let password = body.string("password").unwrap_or_default();
    body.check_types()?;
    account::delete_account(app, &who, &password, &context.client(None))?;
    Ok(Response::empty(204))
}

/// `POST /api/v1/users/me/password`
pub fn change_password(context: &Context<'_>) -> Result<Response, Error> {
    let who = context.authenticate()?;
    let app = context.app;
    let mut body = json_object(context.request, app.settings.max_body_bytes)?;
    let current = body.string("current_password").unwrap_or_default();
    let new_password = body.string("new_password").unwrap_or_default();
    body.check_types()?;
    account::change_password(app, &who, &current, &new_password, &context.client(None))?;
    Ok(Response::empty(204))
}

/// The acting admin of an admin request.
fn admin(context: &Context<'_>) -> Result<crate::users::User, Error> {
    let who = context.authenticate()?;
    admin::require_admin(context.app, &who)
}

/// The `{id}` of the route.
fn path_id<'c>(context: &'c Context<'_>) -> Result<&'c str, Error> {
    context
        .params
        .first()
        .map(String::as_str)
        .ok_or(Error::NotFound)
}

/// `GET /api/v1/admin/users?q=&limit=&cursor=`
pub fn admin_list_users(context: &Context<'_>) -> Result<Response, Error> {
    admin(context)?;
    let request = context.request;
    let limit = admin::page_size(request.query_param("limit").as_deref())?;
    let page = admin::list_users(
        context.app,
        request.query_param("q").as_deref(),
        limit,
        request.query_param("cursor").as_deref(),
    )?;
    Ok(Response::json(
        200,
        &json!({"users": page.items, "next_cursor": page.next_cursor}),
    ))
}

/// `GET /api/v1/admin/users/{id}`
pub fn admin_get_user(context: &Context<'_>) -> Result<Response, Error> {
    admin(context)?;
    let user = admin::get_user(context.app, path_id(context)?)?;
    Ok(Response::json(200, &json!(user.public())))
}

/// `PATCH /api/v1/admin/users/{id}`
pub fn admin_update_user(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    let mut body = json_object(context.request, context.app.settings.max_body_bytes)?;
    let change = admin::UserChange {
        is_active: body.boolean("is_active"),
        is_admin: body.boolean("is_admin"),
        email_verified: body.boolean("email_verified"),
    };
    body.check_types()?;
    let id = path_id(context)?;
    let user = admin::update_user(context.app, &actor, id, &change, &context.client(None))?;
    Ok(Response::json(200, &json!(user.public())))
}

/// `DELETE /api/v1/admin/users/{id}`
pub fn admin_delete_user(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    admin::delete_user(
        context.app,
        &actor,
        path_id(context)?,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// `DELETE /api/v1/admin/users/{id}/sessions`
pub fn admin_revoke_sessions(context: &Context<'_>) -> Result<Response, Error> {
    let actor = admin(context)?;
    admin::revoke_sessions(
        context.app,
        &actor,
        path_id(context)?,
        &context.client(None),
    )?;
    Ok(Response::empty(204))
}

/// `GET /api/v1/admin/audit?user_id=&event=&limit=&cursor=`
pub fn admin_audit(context: &Context<'_>) -> Result<Response, Error> {
    admin(context)?;
    let request = context.request;
    let limit = admin::page_size(request.query_param("limit").as_deref())?;
    let page = admin::list_audit(
        context.app,
        request.query_param("user_id").as_deref(),
        request.query_param("event").as_deref(),
        limit,
        request.query_param("cursor").as_deref(),
    )?;
    Ok(Response::json(
        200,
        &json!({"events": page.items, "next_cursor": page.next_cursor}),
    ))
}
