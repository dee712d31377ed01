//! What the fuzz targets share: a populated world (the component's in-memory SQLite
//! store with the real migrations, a test clock, the settings, a user and an admin signed
//! in, live verification and reset tokens, a third user with two-factor authentication on
//! and a login of it waiting for its second step), in which each execution runs inside a
//! transaction rolled back afterwards ([`in_world`]); and a request format the seeds are
//! written in (an HTTP/1.1-like text whose `$PLACEHOLDERS` stand for the world's tokens).
//!
//! The one stand-in is the Argon2 kernel ([`FuzzEnv`]'s `argon2`): the real one takes
//! tens of milliseconds and 19 MiB per hash, which would make every login a thousand
//! times slower than the rest of a request. The stand-in keeps the kernel's bounds (it
//! refuses what the real kernel refuses) and returns a SHA-256 expansion of its inputs,
//! so a password matches exactly the hash made from it, as with the real kernel.

use portcullis_component::account;
use portcullis_component::admin;
use portcullis_component::app::App;
use portcullis_component::auth::{self, Registered, Registration};
use portcullis_component::db::Db;
use portcullis_component::error::Error;
use portcullis_component::http::{Body, Request, Response};
use portcullis_component::mfa::{self, totp};
use portcullis_component::ports::{Argon2Params, Argon2Variant, Env, Store};
use portcullis_component::sessions::{self, Client};
use portcullis_component::settings::Settings;
use portcullis_component::testing::{self, MemoryStore};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// A clock and deterministic randomness (as the unit tests' `TestEnv`) that can be put
/// back to a saved point, with a cheap stand-in for Argon2.
pub struct FuzzEnv {
    now_millis: Cell<i64>,
    counter: Cell<u64>,
}

/// A saved point of a [`FuzzEnv`].
#[derive(Clone, Copy)]
pub struct EnvPoint {
    now_millis: i64,
    counter: u64,
}

impl FuzzEnv {
    pub fn at(seconds: i64) -> FuzzEnv {
        FuzzEnv {
            now_millis: Cell::new(seconds * 1000),
            counter: Cell::new(0),
        }
    }

    pub fn point(&self) -> EnvPoint {
        EnvPoint {
            now_millis: self.now_millis.get(),
            counter: self.counter.get(),
        }
    }

    pub fn restore(&self, point: EnvPoint) {
        self.now_millis.set(point.now_millis);
        self.counter.set(point.counter);
    }
}

impl Env for FuzzEnv {
    fn now_millis(&self) -> i64 {
        self.now_millis.get()
    }

    fn random_bytes(&self, len: usize) -> Vec<u8> {
        testing::deterministic_bytes(&self.counter, len)
    }

    fn argon2(
        &self,
        password: &[u8],
        salt: &[u8],
        params: &Argon2Params,
    ) -> Result<Vec<u8>, String> {
        use portcullis_hasher as kernel;
        let within = password.len() <= kernel::MAX_PASSWORD_BYTES
            && kernel::SALT_BYTES.contains(&salt.len())
            && kernel::OUTPUT_BYTES.contains(&params.output_len)
            && params.memory_kib <= kernel::MAX_MEMORY_KIB
            && params.iterations <= kernel::MAX_ITERATIONS
            && params.parallelism <= kernel::MAX_PARALLELISM
            && matches!(params.version, 0x10 | 0x13);
        if !within {
            return Err("parameters out of the kernel's bounds".into());
        }
        let mut output = Vec::new();
        for block in 0u32.. {
            if output.len() >= params.output_len as usize {
                break;
            }
            let digest = Sha256::new()
                .chain_update(block.to_le_bytes())
                .chain_update([u8::from(params.variant == Argon2Variant::Argon2id)])
                .chain_update(params.version.to_le_bytes())
                .chain_update(params.memory_kib.to_le_bytes())
                .chain_update(params.iterations.to_le_bytes())
                .chain_update(params.parallelism.to_le_bytes())
                .chain_update((password.len() as u64).to_le_bytes())
                .chain_update(password)
                .chain_update(salt)
                .finalize();
            output.extend_from_slice(&digest);
        }
        output.truncate(params.output_len as usize);
        Ok(output)
    }
}

/// The moment every world starts at (2027-01-15).
pub const START: i64 = 1_800_000_000;
/// The HS256 secret of every world.
pub const JWT_SECRET: &str = "fuzzing-secret-of-at-least-32-bytes!";
/// The address the host reports for every request.
pub const CLIENT_ADDR: &str = "203.0.113.7:5555";
/// The signed-in user's identity.
pub const USER: (&str, &str, &str) = ("fuzz_user", "fuzz@example.com", "Tr1cky!Horse#42");
/// The admin's identity.
pub const ADMIN: (&str, &str, &str) = ("fuzz_admin", "admin@example.com", "Adm1n!Horse#42");
/// The identity of the user with two-factor authentication on.
pub const MFA_USER: (&str, &str, &str) = ("fuzz_mfa", "mfa@example.com", "Tw0!Factor#Gate");

/// Settings with the fuzzing secret and the given overrides (`None` when they are bad).
pub fn settings(overrides: &[(String, String)]) -> Option<Settings> {
    Settings::from_lookup(|key| {
        overrides
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .or_else(|| (key == "jwt_secret").then(|| JWT_SECRET.to_string()))
    })
    .ok()
}

/// One execution's service: a fresh database, the clock at [`START`], the settings.
pub struct World {
    pub store: MemoryStore,
    pub env: FuzzEnv,
    pub settings: Settings,
}

/// What the world was given before the input runs: each `None` when the settings made
/// it impossible (e.g. a login refused until the address is verified).
#[derive(Default)]
pub struct Fixtures {
    pub user_id: Option<String>,
    pub user_access: Option<String>,
    pub user_refresh: Option<String>,
    pub admin_id: Option<String>,
    pub admin_access: Option<String>,
    pub verify_token: Option<String>,
    pub reset_token: Option<String>,
    /// The two-factor user's access token (a session opened before MFA was turned on).
    pub mfa_access: Option<String>,
    /// The `mfa_token` of the two-factor user's login waiting for its second step.
    pub mfa_token: Option<String>,
    /// The one TOTP code the service accepts now: the next step's (the current step's
    /// code was spent by the enrolment's confirmation, and a spent step never wins).
    pub totp_code: Option<String>,
    /// The two-factor user's TOTP secret.
    pub mfa_secret: Vec<u8>,
    /// The two-factor user's unspent recovery codes, as shown.
    pub recovery_codes: Vec<String>,
}

impl World {
    pub fn new(settings: Settings) -> World {
        World {
            store: MemoryStore::new(),
            env: FuzzEnv::at(START),
            settings,
        }
    }

    pub fn app(&self) -> App<'_> {
        App {
            db: Db::new(&self.store),
            env: &self.env,
            settings: &self.settings,
        }
    }

    /// Registers and signs in the user and the admin, asks for a verification mail and a
    /// password reset for the user, and reads their tokens from the mails, all through
    /// the component's own functions.
    pub fn populate(&self) -> Fixtures {
        let app = self.app();
        let client = client();
        let mut fixtures = Fixtures::default();
        if let Ok(Registered::SignedIn(grant)) = auth::register(&app, &registration(USER), &client)
        {
            fixtures.user_id = Some(grant.user.id.clone());
            if let Ok(who) = sessions::authenticate(&app, &grant.access_token) {
                let _ = account::request_verification(&app, &who, &client);
            }
            fixtures.user_access = Some(grant.access_token);
            fixtures.user_refresh = Some(grant.refresh_token);
        }
        if let Ok(Some(user)) = admin::create_admin(&app, &registration(ADMIN), false) {
            fixtures.admin_id = Some(user.id);
            if let Ok(grant) = auth::login(&app, ADMIN.0, ADMIN.2, &client) {
                fixtures.admin_access = Some(grant.access_token);
            }
        }
        let _ = account::forgot_password(&app, USER.1, &client);
        for mail in account::claim_due_mail(&app, 10, 60).unwrap_or_default() {
            let token = link_token(&mail.text_body);
            if mail.text_body.contains("/verify-email?token=") {
                fixtures.verify_token = token;
            } else if mail.text_body.contains("/reset-password?token=") {
                fixtures.reset_token = token;
            }
        }
        self.enable_mfa(&mut fixtures);
        fixtures
    }

    /// Registers [`MFA_USER`], turns two-factor authentication on for it (enrolment
    /// and confirmation with the current step's code) and logs it in up to its second
    /// step, through the component's own functions.
    fn enable_mfa(&self, fixtures: &mut Fixtures) {
        let app = self.app();
        let client = client();
        let Ok(Registered::SignedIn(grant)) =
            auth::register(&app, &registration(MFA_USER), &client)
        else {
            return;
        };
        let Ok(who) = sessions::authenticate(&app, &grant.access_token) else {
            return;
        };
        let Ok(enrolment) = mfa::enrol(&app, &who, MFA_USER.2, &client) else {
            return;
        };
        let Ok(secret) = data_encoding::BASE32_NOPAD.decode(enrolment.secret.as_bytes()) else {
            return;
        };
        let step = totp::step_at(app.now());
        let code = totp::code(&secret, step, totp::DIGITS);
        let Ok(recovery_codes) = mfa::confirm(&app, &who, &code, &client) else {
            return;
        };
        if let Err(Error::MfaRequired { mfa_token }) =
            auth::login(&app, MFA_USER.0, MFA_USER.2, &client)
        {
            fixtures.mfa_token = Some(mfa_token);
        }
        fixtures.totp_code = Some(totp::code(&secret, step + 1, totp::DIGITS));
        fixtures.mfa_access = Some(grant.access_token);
        fixtures.mfa_secret = secret;
        fixtures.recovery_codes = recovery_codes;
    }
}

/// The registration of an identity of the world.
fn registration((username, email, password): (&str, &str, &str)) -> Registration {
    Registration {
        username: username.into(),
        email: email.into(),
        password: password.into(),
        mobile_number: None,
    }
}

/// The client every request of the fixtures comes from.
pub fn client() -> Client {
    Client::new(Some("fuzzer".into()), Some("203.0.113.7".into()))
}

/// The token of the first `?token=` link in a mail's text.
fn link_token(text: &str) -> Option<String> {
    let start = text.find("?token=")? + "?token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    (!token.is_empty()).then_some(token)
}

impl Fixtures {
    /// Replaces each `$NAME` of the fixtures in `bytes` (an absent fixture by nothing).
    pub fn substitute(&self, bytes: &[u8]) -> Vec<u8> {
        let recovery_code = self.recovery_codes.first().cloned();
        let pairs: [(&[u8], &Option<String>); 11] = [
            (b"$USER_ACCESS", &self.user_access),
            (b"$USER_REFRESH", &self.user_refresh),
            (b"$USER_ID", &self.user_id),
            (b"$ADMIN_ACCESS", &self.admin_access),
            (b"$ADMIN_ID", &self.admin_id),
            (b"$VERIFY_TOKEN", &self.verify_token),
            (b"$RESET_TOKEN", &self.reset_token),
            (b"$MFA_ACCESS", &self.mfa_access),
            (b"$MFA_TOKEN", &self.mfa_token),
            (b"$TOTP_CODE", &self.totp_code),
            (b"$RECOVERY_CODE", &recovery_code),
        ];
        let mut out = Vec::with_capacity(bytes.len() + 64);
        let mut rest = bytes;
        'outer: while let Some((&first, tail)) = rest.split_first() {
            if first == b'$' {
                for (name, value) in &pairs {
                    if let Some(after) = rest.strip_prefix(*name) {
                        out.extend_from_slice(value.as_deref().unwrap_or_default().as_bytes());
                        rest = after;
                        continue 'outer;
                    }
                }
            }
            out.push(first);
            rest = tail;
        }
        out
    }
}

/// A request written as text, the format of the seeds:
///
/// ```text
/// POST /api/v1/auth/login?x=1
/// content-type: application/json
/// x-fuzz-setting: password_policy=nist
///
/// {"login":"fuzz_user","password":"…"}
/// ```
///
/// The first line is the method and the target (path, then `?` and the query); header
/// lines follow up to an empty line, then the body (bytes, as they are). Header names
/// are lower-cased (as hosts hand them over); `spin-client-addr` is always the
/// harness's (hosts overwrite it); `x-fuzz-setting: key=value` lines are settings for
/// this execution, not headers.
pub struct TextRequest {
    pub request: Request,
    pub settings: Vec<(String, String)>,
}

impl TextRequest {
    pub fn parse(bytes: &[u8]) -> TextRequest {
        let (head, body) = split_head(bytes);
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n').map(|line| line.trim_end_matches('\r'));
        let request_line = lines.next().unwrap_or_default();
        let (method, target) = request_line.split_once(' ').unwrap_or((request_line, ""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = vec![("spin-client-addr".to_string(), CLIENT_ADDR.to_string())];
        let mut settings = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            match name.as_str() {
                "spin-client-addr" => {}
                "x-fuzz-setting" => {
                    let (key, value) = value.split_once('=').unwrap_or((&value, ""));
                    settings.push((key.trim().to_string(), value.trim().to_string()));
                }
                _ => headers.push((name, value)),
            }
        }
        TextRequest {
            request: Request {
                method: method.to_string(),
                path: path.to_string(),
                query: query.to_string(),
                headers,
                body: Body::Complete(body.to_vec()),
            },
            settings,
        }
    }
}

/// The head (up to the first empty line) and the body.
fn split_head(bytes: &[u8]) -> (&[u8], &[u8]) {
    for (separator, skip) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = bytes.windows(skip).position(|window| window == separator) {
            return (&bytes[..at], &bytes[at + skip..]);
        }
    }
    (bytes, &[])
}

/// Runs `request` through the component's HTTP entry point and checks what every answer
/// must be, whatever was asked (docs/reference.md's conventions):
/// - never a 500 (the in-memory database does not fail: a 500 is a bug);
/// - the common headers on every answer;
/// - a 405 names the allowed methods;
/// - a problem answer is RFC 9457 JSON with its code and the answer's status.
pub fn handle_and_check(app: &App<'_>, request: &Request) -> Response {
    let response = portcullis_component::http::handle(app, request);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_ne!(
        response.status,
        500,
        "{request:?} -> {}",
        String::from_utf8_lossy(&response.body)
    );
    assert!((200..600).contains(&response.status), "{}", response.status);
    assert_eq!(header("x-content-type-options"), Some("nosniff"));
    assert_eq!(header("referrer-policy"), Some("no-referrer"));
    assert!(header("cache-control").is_some());
    if response.status == 405 {
        assert!(header("allow").is_some_and(|allow| !allow.is_empty()));
    }
    if header("content-type") == Some("application/problem+json") {
        let problem: serde_json::Value =
            serde_json::from_slice(&response.body).expect("a problem body is JSON");
        assert_eq!(problem["status"], response.status, "{problem}");
        assert!(problem["code"].is_string() && problem["title"].is_string());
    }
    response
}

/// Every endpoint that reads a body, with the bearer token it is called with.
pub const BODY_ENDPOINTS: &[(&str, &str, Option<&str>)] = &[
    ("POST", "/api/v1/auth/register", None),
    ("POST", "/api/v1/auth/login", None),
    ("POST", "/api/v1/auth/refresh", None),
    ("POST", "/api/v1/auth/logout", Some("$USER_ACCESS")),
    ("POST", "/api/v1/auth/logout-all", Some("$USER_ACCESS")),
    (
        "POST",
        "/api/v1/auth/email/verify-request",
        Some("$USER_ACCESS"),
    ),
    ("POST", "/api/v1/auth/email/verify", None),
    ("POST", "/api/v1/auth/password/forgot", None),
    ("POST", "/api/v1/auth/password/reset", None),
    ("PATCH", "/api/v1/users/me", Some("$USER_ACCESS")),
    ("DELETE", "/api/v1/users/me", Some("$USER_ACCESS")),
    ("POST", "/api/v1/users/me/password", Some("$USER_ACCESS")),
    (
        "PATCH",
        "/api/v1/admin/users/$USER_ID",
        Some("$ADMIN_ACCESS"),
    ),
    (
        "DELETE",
        "/api/v1/admin/users/$USER_ID/sessions",
        Some("$ADMIN_ACCESS"),
    ),
    ("POST", "/api/v1/admin/users/import", Some("$ADMIN_ACCESS")),
    // Two-factor authentication (issue #15), answered 404 until its routes exist.
    ("POST", "/api/v1/users/me/mfa/totp", Some("$USER_ACCESS")),
    (
        "POST",
        "/api/v1/users/me/mfa/totp/confirm",
        Some("$USER_ACCESS"),
    ),
    (
        "POST",
        "/api/v1/users/me/mfa/recovery-codes",
        Some("$USER_ACCESS"),
    ),
    ("DELETE", "/api/v1/users/me/mfa", Some("$USER_ACCESS")),
    ("POST", "/api/v1/auth/mfa/verify", None),
    (
        "DELETE",
        "/api/v1/admin/users/$USER_ID/mfa",
        Some("$ADMIN_ACCESS"),
    ),
];

/// The whole request to an endpoint of [`BODY_ENDPOINTS`] with `body`, as text.
pub fn endpoint_request(index: usize, content_type: &str, body: &[u8]) -> Vec<u8> {
    let (method, path, bearer) = BODY_ENDPOINTS[index % BODY_ENDPOINTS.len()];
    let mut text = format!("{method} {path}\ncontent-type: {content_type}\n");
    if let Some(bearer) = bearer {
        text.push_str(&format!("authorization: Bearer {bearer}\n"));
    }
    text.push('\n');
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Populated worlds by their settings' overrides, kept between executions.
type Worlds = HashMap<Vec<(String, String)>, Rc<(World, Fixtures, EnvPoint)>>;

/// The most worlds kept (each is a small in-memory database).
const MAX_WORLDS: usize = 32;

/// Runs `run` in the populated world of these settings' overrides (`None` when they are
/// not valid settings), inside a transaction rolled back afterwards, with the clock and
/// randomness put back: every execution starts from the same state, and the world is
/// made once rather than per execution (which would cost more than the input's work).
pub fn in_world<R>(
    overrides: &[(String, String)],
    run: impl FnOnce(&World, &Fixtures) -> R,
) -> Option<R> {
    thread_local!(static WORLDS: RefCell<Worlds> = RefCell::new(HashMap::new()));
    let cached = WORLDS.with(|worlds| worlds.borrow().get(overrides).cloned());
    let populated = match cached {
        Some(populated) => populated,
        None => {
            let world = World::new(settings(overrides)?);
            let fixtures = world.populate();
            let point = world.env.point();
            let populated = Rc::new((world, fixtures, point));
            WORLDS.with(|worlds| {
                let mut worlds = worlds.borrow_mut();
                if worlds.len() >= MAX_WORLDS {
                    worlds.clear();
                }
                worlds.insert(overrides.to_vec(), Rc::clone(&populated));
            });
            populated
        }
    };
    let (world, fixtures, point) = &*populated;
    world
        .store
        .execute("BEGIN", &[])
        .expect("the in-memory database begins a transaction");
    let result = run(world, fixtures);
    if world.store.execute("ROLLBACK", &[]).is_err() {
        // SQLite ended the transaction itself: what ran after it may have been kept.
        WORLDS.with(|worlds| worlds.borrow_mut().remove(overrides));
    }
    world.env.restore(*point);
    Some(result)
}

/// Runs one request written as text in the populated world of its `x-fuzz-setting`
/// lines; `None` when they are not valid settings.
pub fn run_text_request(bytes: &[u8]) -> Option<Response> {
    let overrides = TextRequest::parse(bytes).settings;
    in_world(&overrides, |world, fixtures| {
        let text = fixtures.substitute(bytes);
        let mut request = TextRequest::parse(&text).request;
        // What a host does: it reads no more of the body than the limit.
        let limit =
            portcullis_component::http::body_limit(&world.settings, &request.method, &request.path);
        if matches!(&request.body, Body::Complete(body) if body.len() > limit) {
            request.body = Body::TooLarge;
        }
        handle_and_check(&world.app(), &request)
    })
}
