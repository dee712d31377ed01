//! The settings the component reads from `wasi:config/store` (API.md §1), parsed and
//! checked in one place. Keys are the variable names without `PORTCULLIS_`, lower-cased;
//! every bad value yields one line naming the variable.

/// Minimum HS256 key length in bytes (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET_BYTES: usize = 32;
/// The largest password the service accepts (API.md §4).
pub const PASSWORD_MAX_LENGTH: usize = 128;
/// The hard cap on request bodies (API.md §1).
const MAX_BODY_HARD_CAP: usize = 1024 * 1024;

/// Every key [`Settings::from_lookup`] reads (a unit test keeps this list true). Hosts
/// use it to tell settings from typos; the reference in `docs/` lists each one.
pub const KEYS: &[&str] = &[
    "jwt_secret",
    "jwt_algorithm",
    "jwt_signing_key",
    "jwt_issuer",
    "jwt_audience",
    "access_ttl",
    "refresh_ttl",
    "clock_skew",
    "refresh_reuse_grace",
    "max_sessions",
    "session_limit_policy",
    "password_policy",
    "password_min_length",
    "require_email_verification",
    "rate_limit",
    "rate_limit_login",
    "rate_limit_register",
    "rate_limit_password",
    "rate_limit_email",
    "login_throttle",
    "max_body_bytes",
    "listen",
    "public_url",
    "trusted_proxies",
    "cors_origins",
    "cookie_sessions",
    "cookie_secure",
    "session_retention",
    "audit_retention_days",
    "mfa_issuer",
    "mfa_token_ttl",
];

/// Which rules passwords follow (API.md §1 `PORTCULLIS_PASSWORD_POLICY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordPolicy {
    /// Upper, lower, digit and special characters, ASCII only.
    Complex,
    /// Length only, any Unicode (NIST SP 800-63B).
    Nist,
}

/// How access tokens are signed (API.md §1 `PORTCULLIS_JWT_ALGORITHM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `PORTCULLIS_JWT_SECRET`.
    Hs256,
    /// Ed25519 with keys kept in the database and published at `/.well-known/jwks.json`.
    EdDsa,
}

/// The seed of an Ed25519 signing key given in the settings (`jwt_signing_key`); its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSeed(pub [u8; 32]);

impl std::fmt::Debug for SigningSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSeed(redacted)")
    }
}

/// What happens when a login would exceed `max_sessions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionLimitPolicy {
    EvictOldest,
    Reject,
}

/// A per-client-IP request budget: `requests` per `seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub seconds: u32,
}

/// The endpoint groups that may have a rate limit of their own (`rate_limit_<group>`);
/// the other rate-limited endpoints share `rate_limit`'s counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitGroup {
    /// `rate_limit`: every rate-limited endpoint of no group below, or of a group
    /// without a setting of its own.
    Default,
    /// Login, the OAuth2 token endpoint and the second factor.
    Login,
    Register,
    /// Forgotten-password mails and resets.
    Password,
    /// Verification mails and verifications.
    Email,
}

impl RateLimitGroup {
    /// The groups with a setting of their own.
    pub const OWN: [RateLimitGroup; 4] = [
        RateLimitGroup::Login,
        RateLimitGroup::Register,
        RateLimitGroup::Password,
        RateLimitGroup::Email,
    ];

    /// The group's name: its setting's suffix and its counter's key.
    pub fn name(self) -> &'static str {
        match self {
            RateLimitGroup::Default => "default",
            RateLimitGroup::Login => "login",
            RateLimitGroup::Register => "register",
            RateLimitGroup::Password => "password",
            RateLimitGroup::Email => "email",
        }
    }
}

/// A group's own rate limit: unset (the group shares `rate_limit`'s counter), `off`, or
/// a budget counted for the group alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRateLimit {
    Shared,
    Own(Option<RateLimit>),
}

/// The rate limit that applies to a group, and whether it has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveRateLimit {
    /// `None`: not limited.
    pub limit: Option<RateLimit>,
    /// The group whose counter the requests count on.
    pub counter: RateLimitGroup,
}

/// Every setting the component uses, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub jwt_secret: Vec<u8>,
    pub jwt_algorithm: JwtAlgorithm,
    /// The EdDSA signing key given in the settings, if any (else keys are generated).
    pub jwt_signing_key: Option<SigningSeed>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_ttl: u32,
    pub refresh_ttl: u32,
    pub clock_skew: u32,
    pub refresh_reuse_grace: u32,
    pub max_sessions: u32,
    pub session_limit_policy: SessionLimitPolicy,
    pub password_policy: PasswordPolicy,
    pub password_min_length: usize,
    pub require_email_verification: bool,
    pub rate_limit: Option<RateLimit>,
    /// The groups' own limits, in [`RateLimitGroup::OWN`]'s order.
    pub group_rate_limits: [GroupRateLimit; 4],
    pub login_throttle: u32,
    pub max_body_bytes: usize,
    /// Base of the links in mails, without a trailing `/`.
    pub public_url: String,
    /// Networks whose `X-Forwarded-For` is believed for the client IP.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed to call the API from a browser (CORS); `*` allows any.
    pub cors_origins: Vec<String>,
    /// Whether `X-Portcullis-Session: cookie` asks for a browser session with cookies.
    pub cookie_sessions: bool,
    /// Whether the session cookies carry `Secure` (by default when `public_url` is
    /// https).
    pub cookie_secure: bool,
    /// Seconds an ended session (and its refresh tokens) is kept; 0: until the next
    /// retention round (`crate::retention`).
    pub session_retention: u32,
    /// Days an audit event is kept; 0 keeps every event.
    pub audit_retention_days: u32,
    /// The issuer label of TOTP enrolments (`otpauth://totp/{issuer}:{username}`).
    pub mfa_issuer: String,
    /// Seconds an `mfa_token` (the second step of a login) stays valid.
    pub mfa_token_ttl: u32,
}

impl Settings {
    /// The rate limit of an endpoint group: its own when it has a setting, else
    /// `rate_limit` on the shared counter.
    pub fn rate_limit_of(&self, group: RateLimitGroup) -> EffectiveRateLimit {
        let own = RateLimitGroup::OWN
            .iter()
            .zip(self.group_rate_limits)
            .find(|(candidate, _)| **candidate == group)
            .map(|(_, limit)| limit);
        match own {
            Some(GroupRateLimit::Own(limit)) => EffectiveRateLimit {
                limit,
                counter: group,
            },
            Some(GroupRateLimit::Shared) | None => EffectiveRateLimit {
                limit: self.rate_limit,
                counter: RateLimitGroup::Default,
            },
        }
    }

    /// Reads and checks every setting through `lookup` (key → value). Returns all the
    /// problems at once, one line per bad setting.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, Vec<String>> {
        let mut reader = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let jwt_secret = reader.jwt_secret();
        let jwt_algorithm = reader.jwt_algorithm();
        let public_url = reader.public_url();
        let settings = Settings {
            jwt_secret,
            jwt_algorithm,
            jwt_signing_key: reader.jwt_signing_key(jwt_algorithm),
            jwt_issuer: reader.text("jwt_issuer", "portcullis"),
            jwt_audience: reader.text("jwt_audience", "portcullis"),
            access_ttl: reader.number("access_ttl", 900, 1, 86_400),
            refresh_ttl: reader.number("refresh_ttl", 604_800, 60, 31_536_000),
            clock_skew: reader.number("clock_skew", 10, 0, 300),
            refresh_reuse_grace: reader.number("refresh_reuse_grace", 0, 0, 300),
            max_sessions: reader.number("max_sessions", 2, 0, 10_000),
            session_limit_policy: reader.session_limit_policy(),
            password_policy: reader.password_policy(),
            password_min_length: reader.number("password_min_length", 8, 8, 128) as usize,
            require_email_verification: reader.boolean("require_email_verification", false),
            rate_limit: reader.rate_limit("rate_limit"),
            group_rate_limits: RateLimitGroup::OWN.map(|group| reader.group_rate_limit(group)),
            login_throttle: reader.number("login_throttle", 5, 0, 1_000),
            max_body_bytes: reader.number("max_body_bytes", 10_240, 64, MAX_BODY_HARD_CAP as u32)
                as usize,
            trusted_proxies: reader.trusted_proxies(),
            cors_origins: reader.list("cors_origins"),
            cookie_sessions: reader.boolean("cookie_sessions", false),
            cookie_secure: reader
                .optional_boolean("cookie_secure")
                .unwrap_or(public_url.starts_with("https://")),
            public_url,
            session_retention: reader.number("session_retention", 604_800, 0, 315_360_000),
            audit_retention_days: reader.number("audit_retention_days", 365, 0, 36_500),
            mfa_issuer: reader.mfa_issuer(),
            mfa_token_ttl: reader.number("mfa_token_ttl", 300, 1, 3_600),
        };
        if reader.problems.is_empty() {
            Ok(settings)
        } else {
            Err(reader.problems)
        }
    }
}

/// Reads settings one by one and collects the problems.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key).map(|value| value.trim().to_string())
    }

    fn complain(&mut self, key: &str, message: String) {
        self.problems.push(format!(
            "PORTCULLIS_{}: {message}",
            key.to_ascii_uppercase()
        ));
    }

    /// The TOTP issuer label: at most 64 characters, no `:` (it separates the issuer from
    /// the account in the `otpauth://` label) and no control characters.
    fn mfa_issuer(&mut self) -> String {
        const DEFAULT: &str = "Portcullis";
        let issuer = self.text("mfa_issuer", DEFAULT);
        if issuer.chars().count() > 64 || issuer.chars().any(|c| c == ':' || c.is_control()) {
            self.complain(
                "mfa_issuer",
                "at most 64 characters, without ':' or control characters".into(),
            );
            return DEFAULT.into();
        }
        issuer
    }

    fn text(&mut self, key: &str, default: &str) -> String {
        match self.raw(key) {
            Some(value) if value.is_empty() => {
                self.complain(key, "must not be empty".into());
                default.to_string()
            }
            Some(value) => value,
            None => default.to_string(),
        }
    }

    fn number(&mut self, key: &str, default: u32, min: u32, max: u32) -> u32 {
        let Some(value) = self.raw(key) else {
            return default;
        };
        match value.parse::<u32>() {
            Ok(number) if (min..=max).contains(&number) => number,
            _ => {
                self.complain(
                    key,
                    format!("expected a whole number from {min} to {max}, got {value:?}"),
                );
                default
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        let Some(value) = self.raw(key) else {
            return default;
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.complain(key, format!("expected true or false, got {value:?}"));
                default
            }
        }
    }

    /// A boolean that may be left unset, or empty (a Spin variable's default).
    fn optional_boolean(&mut self, key: &str) -> Option<bool> {
        let set = self.raw(key).is_some_and(|value| !value.is_empty());
        set.then(|| self.boolean(key, false))
    }

    fn jwt_secret(&mut self) -> Vec<u8> {
        match (self.lookup)("jwt_secret") {
            None => {
                self.complain("jwt_secret", "is not set".into());
                Vec::new()
            }
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                self.complain(
                    "jwt_secret",
                    format!(
                        "must be at least {MIN_SECRET_BYTES} bytes long (it is {})",
                        secret.len()
                    ),
                );
                Vec::new()
            }
            Some(secret) => secret.into_bytes(),
        }
    }

    fn jwt_algorithm(&mut self) -> JwtAlgorithm {
        match self.raw("jwt_algorithm").as_deref() {
            None | Some("HS256") => JwtAlgorithm::Hs256,
            Some("EdDSA") => JwtAlgorithm::EdDsa,
            Some(other) => {
                let message = format!("expected HS256 or EdDSA, got {other:?}");
                self.complain("jwt_algorithm", message);
                JwtAlgorithm::Hs256
            }
        }
    }

    /// An Ed25519 private key in PKCS#8 PEM (`\n` escapes accepted, for settings that
    /// cannot hold line breaks); only with EdDSA. The value is never echoed.
    fn jwt_signing_key(&mut self, algorithm: JwtAlgorithm) -> Option<SigningSeed> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let pem = self
            .raw("jwt_signing_key")
            .filter(|value| !value.is_empty())?;
        if algorithm != JwtAlgorithm::EdDsa {
            let message = "applies only with PORTCULLIS_JWT_ALGORITHM=EdDSA".into();
            self.complain("jwt_signing_key", message);
            return None;
        }
        match ed25519_dalek::SigningKey::from_pkcs8_pem(&pem.replace("\\n", "\n")) {
            Ok(key) => Some(SigningSeed(key.to_bytes())),
            Err(_) => {
                let message = "expected an Ed25519 private key in PKCS#8 PEM \
                               (-----BEGIN PRIVATE KEY-----)"
                    .into();
                self.complain("jwt_signing_key", message);
                None
            }
        }
    }

    /// A comma-separated list; empty when unset.
    fn list(&mut self, key: &str) -> Vec<String> {
        self.raw(key)
            .map(|value| {
                value
                    .split(',')
                    .map(|item| item.trim().trim_end_matches('/').to_string())
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// CIDRs (or single addresses) of trusted proxies.
    fn trusted_proxies(&mut self) -> Vec<ipnet::IpNet> {
        let mut networks = Vec::new();
        for item in self.list("trusted_proxies") {
            let parsed = item
                .parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(network) => networks.push(network),
                Err(_) => self.complain(
                    "trusted_proxies",
                    format!("{item:?} is not a CIDR such as 10.0.0.0/8 or an IP address"),
                ),
            }
        }
        networks
    }

    /// `public_url`, by default `http://` and the address the host listens on.
    fn public_url(&mut self) -> String {
        let listen = self
            .raw("listen")
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let value = self.text("public_url", &format!("http://{listen}"));
        let url = value.trim_end_matches('/');
        // A host after the scheme: `https://` alone would make links like `https:/verify-email`.
        let has_host = ["http://", "https://"].iter().any(|scheme| {
            url.strip_prefix(scheme)
                .is_some_and(|host| !host.is_empty())
        });
        if !has_host || value.contains(char::is_whitespace) {
            self.complain(
                "public_url",
                format!("expected an http(s) URL, got {value:?}"),
            );
        }
        url.to_string()
    }

    fn session_limit_policy(&mut self) -> SessionLimitPolicy {
        match self.raw("session_limit_policy").as_deref() {
            None | Some("evict_oldest") => SessionLimitPolicy::EvictOldest,
            Some("reject") => SessionLimitPolicy::Reject,
            Some(other) => {
                let message = format!("expected evict_oldest or reject, got {other:?}");
                self.complain("session_limit_policy", message);
                SessionLimitPolicy::EvictOldest
            }
        }
    }

    fn password_policy(&mut self) -> PasswordPolicy {
        match self.raw("password_policy").as_deref() {
            None | Some("complex") => PasswordPolicy::Complex,
            Some("nist") => PasswordPolicy::Nist,
            Some(other) => {
                let message = format!("expected complex or nist, got {other:?}");
                self.complain("password_policy", message);
                PasswordPolicy::Complex
            }
        }
    }

    /// A group's `rate_limit_<group>`: unset or empty (a Spin variable's default) shares
    /// `rate_limit`.
    fn group_rate_limit(&mut self, group: RateLimitGroup) -> GroupRateLimit {
        let key = format!("rate_limit_{}", group.name());
        match self.raw(&key) {
            Some(value) if !value.is_empty() => GroupRateLimit::Own(self.rate_limit(&key)),
            _ => GroupRateLimit::Shared,
        }
    }

    /// `N/S` (N requests per S seconds) or `off`; `rate_limit` defaults to 10/60.
    fn rate_limit(&mut self, key: &str) -> Option<RateLimit> {
        let value = self.raw(key).unwrap_or_else(|| "10/60".into());
        if value.eq_ignore_ascii_case("off") {
            return None;
        }
        let parsed = value.split_once('/').and_then(|(requests, seconds)| {
            Some(RateLimit {
                requests: requests.trim().parse().ok().filter(|n| *n > 0)?,
                seconds: seconds.trim().parse().ok().filter(|n| *n > 0)?,
            })
        });
        if parsed.is_none() {
            self.complain(
                key,
                format!("expected N/S (N requests per S seconds) or off, got {value:?}"),
            );
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("jwt_secret".into())
            .or_insert_with(|| "x".repeat(32));
        Settings::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn a_signing_key_must_be_ed25519_pkcs8_pem_under_eddsa_and_is_never_echoed() {
        let garbage = "-----BEGIN PRIVATE KEY-----\\nTOP-SECRET\\n-----END PRIVATE KEY-----";
        let problems =
            parse(&[("jwt_algorithm", "EdDSA"), ("jwt_signing_key", garbage)]).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("PORTCULLIS_JWT_SIGNING_KEY: "));
        assert!(!problems[0].contains("TOP-SECRET"));
        let problems = parse(&[("jwt_signing_key", garbage)]).unwrap_err();
        assert!(problems[0].contains("EdDSA"), "{problems:?}");
        // Empty means unset (a Spin variable's default).
        let settings = parse(&[("jwt_algorithm", "EdDSA"), ("jwt_signing_key", "")]).unwrap();
        assert!(settings.jwt_signing_key.is_none());
    }

    #[test]
    fn defaults_match_the_contract() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.access_ttl, 900);
        assert_eq!(settings.refresh_ttl, 604_800);
        assert_eq!(settings.clock_skew, 10);
        assert_eq!(settings.max_sessions, 2);
        assert_eq!(settings.password_min_length, 8);
        assert_eq!(settings.max_body_bytes, 10_240);
        assert_eq!(
            settings.rate_limit,
            Some(RateLimit {
                requests: 10,
                seconds: 60
            })
        );
        assert_eq!(settings.password_policy, PasswordPolicy::Complex);
        assert_eq!(settings.session_retention, 604_800);
        assert_eq!(settings.audit_retention_days, 365);
    }

    #[test]
    fn a_public_url_needs_a_host_after_its_scheme() {
        // Found by the `settings` fuzz target: `https://` was accepted as `https:`.
        for bare in ["https://", "http://", "http:///", "https:"] {
            let problems = parse(&[("public_url", bare)]).unwrap_err();
            assert_eq!(problems.len(), 1, "{bare}: {problems:?}");
            assert!(
                problems[0].starts_with("PORTCULLIS_PUBLIC_URL: "),
                "{problems:?}"
            );
        }
        let settings = parse(&[("public_url", "https://auth.example.com/")]).unwrap();
        assert_eq!(settings.public_url, "https://auth.example.com");
    }

    #[test]
    fn retention_settings_are_bounded_and_zero_is_allowed() {
        let settings = parse(&[("session_retention", "0"), ("audit_retention_days", "0")]).unwrap();
        assert_eq!(
            (settings.session_retention, settings.audit_retention_days),
            (0, 0)
        );
        let problems = parse(&[
            ("session_retention", "-1"),
            ("audit_retention_days", "36501"),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("PORTCULLIS_SESSION_RETENTION: "));
        assert!(problems[1].starts_with("PORTCULLIS_AUDIT_RETENTION_DAYS: "));
    }

    #[test]
    fn every_bad_setting_is_named_once() {
        let problems = parse(&[
            ("jwt_secret", "short"),
            ("access_ttl", "soon"),
            ("password_policy", "strict"),
            ("rate_limit", "10 per minute"),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("PORTCULLIS_JWT_SECRET:"));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("PORTCULLIS_ACCESS_TTL:"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("PORTCULLIS_PASSWORD_POLICY:"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("PORTCULLIS_RATE_LIMIT:"))
        );
    }

    #[test]
    fn the_public_url_defaults_to_the_listen_address() {
        assert_eq!(
            parse(&[("listen", "127.0.0.1:4321")]).unwrap().public_url,
            "http://127.0.0.1:4321"
        );
        assert_eq!(
            parse(&[("public_url", "https://auth.example.com/")])
                .unwrap()
                .public_url,
            "https://auth.example.com"
        );
        assert!(parse(&[("public_url", "ftp://x")]).is_err());
    }

    #[test]
    fn keys_lists_exactly_the_keys_read() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let _ = Settings::from_lookup(|key| {
            read.borrow_mut().insert(key.to_string());
            None
        });
        let listed: std::collections::BTreeSet<String> =
            KEYS.iter().map(|key| key.to_string()).collect();
        assert_eq!(read.into_inner(), listed);
    }

    #[test]
    fn rate_limit_can_be_turned_off() {
        assert_eq!(parse(&[("rate_limit", "off")]).unwrap().rate_limit, None);
    }

    #[test]
    fn groups_without_a_limit_of_their_own_share_the_default_counter() {
        let settings = parse(&[("rate_limit", "7/30"), ("rate_limit_login", "3/60")]).unwrap();
        let default = Some(RateLimit {
            requests: 7,
            seconds: 30,
        });
        for group in [RateLimitGroup::Default, RateLimitGroup::Register] {
            assert_eq!(
                settings.rate_limit_of(group),
                EffectiveRateLimit {
                    limit: default,
                    counter: RateLimitGroup::Default
                }
            );
        }
        assert_eq!(
            settings.rate_limit_of(RateLimitGroup::Login),
            EffectiveRateLimit {
                limit: Some(RateLimit {
                    requests: 3,
                    seconds: 60
                }),
                counter: RateLimitGroup::Login
            }
        );
        let unset = parse(&[("rate_limit_login", ""), ("cookie_secure", "")]).unwrap();
        assert_eq!(
            unset.rate_limit_of(RateLimitGroup::Login).counter,
            RateLimitGroup::Default
        );
        assert!(!unset.cookie_secure);
        let off = parse(&[("rate_limit_email", "off")]).unwrap();
        assert_eq!(off.rate_limit_of(RateLimitGroup::Email).limit, None);
        let problems = parse(&[("rate_limit_password", "5")]).unwrap_err();
        assert!(problems[0].starts_with("PORTCULLIS_RATE_LIMIT_PASSWORD:"));
    }

    #[test]
    fn cookies_are_secure_behind_an_https_public_url_unless_overridden() {
        assert!(!parse(&[]).unwrap().cookie_secure);
        let https = [("public_url", "https://auth.example.com")];
        assert!(parse(&https).unwrap().cookie_secure);
        let overridden = [https[0], ("cookie_secure", "false")];
        assert!(!parse(&overridden).unwrap().cookie_secure);
        assert!(!parse(&[]).unwrap().cookie_sessions);
    }
}
