#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*), from the
requests the black-box suite (tests/api) sends. Run from anywhere; rewrites only the
seed-* files. `$PLACEHOLDERS` stand for the world's ids and tokens (fuzz/src/lib.rs)."""

import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
USER_PASSWORD = "Tr1cky!Horse#42"
ADMIN_PASSWORD = "Adm1n!Horse#42"
NEW_PASSWORD = "N3w!Quartz#Lantern"

# The endpoints of BODY_ENDPOINTS in fuzz/src/lib.rs, in its order.
BODY_ENDPOINTS = [
    "register", "login", "refresh", "logout", "logout_all", "verify_request", "verify",
    "forgot", "reset", "update_me", "delete_me", "change_password", "admin_update",
    "admin_revoke", "import", "mfa_enrol", "mfa_confirm", "mfa_recovery", "mfa_disable",
    "mfa_verify", "admin_mfa_disable",
]

# Import lines, as tests/api/import.rs writes them.
IMPORT_LINES = [
    {"username": "imp_bcrypt", "email": "imp1@example.com",
     "password_hash": "$2b$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9."},
    {"username": "imp_django", "email": "imp2@example.com", "email_verified": True,
     "password_hash": "pbkdf2_sha256$1000$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso="},
    {"username": "imp_passlib", "email": "imp3@example.com", "mobile_number": "+1 (555) 010-9999",
     "password_hash": "$pbkdf2-sha256$1000$.f9fa.39PyckRMgZoxRirA$KYHiQ45RBUDXo9L2i0UOFMQm/rs.GYDl2fWV..pooj4"},
    {"username": "imp_argon2i", "email": "imp4@example.com", "is_admin": False, "is_active": True,
     "created_at": "2020-01-02T03:04:05Z",
     "password_hash": "$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$B+Dg8yf0/uqq5OzjyBRagE/yIGeiS65Ra7pH0NKBauU"},
    {"username": "imp_argon2id", "email": "imp5@example.com",
     "password_hash": "$argon2id$v=19$m=19456,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$XL+39m/CjTvS+/eVVGDw8CV6EO6ds6ILS4OgivMKZsM"},
    {"username": "fuzz_user", "email": "taken@example.com",
     "password_hash": "$2b$04$1jRicVqJcqUVE1qkaNyNhehSK7Lh2KfmOj9V28kNxxp0jgXWExc9."},
    {"username": "bad name", "email": "not-an-email", "password_hash": "md5$salt$0123"},
]

BODIES = {
    "register": [
        {"username": "new_user", "email": "new@example.com", "password": USER_PASSWORD},
        {"username": "new_user", "email": "new@example.com", "password": USER_PASSWORD,
         "mobile_number": "+1 555 010 1234"},
        {"username": 123, "email": ["a@example.com"], "password": {"v": 1}},
    ],
    "login": [
        {"login": "fuzz_user", "password": USER_PASSWORD},
        {"login": "fuzz@example.com", "password": USER_PASSWORD, "device_name": "phone"},
        {"login": "fuzz_admin", "password": "wrong"},
        {"login": ["x"], "password": None},
    ],
    "refresh": [{"refresh_token": "$USER_REFRESH"}, {"refresh_token": [1]}, {}],
    "logout": [{}],
    "logout_all": [{}],
    "verify_request": [{}],
    "verify": [{"token": "$VERIFY_TOKEN"}, {"token": "no-such-token"}],
    "forgot": [{"email": "fuzz@example.com"}, {"email": "x"}],
    "reset": [{"token": "$RESET_TOKEN", "new_password": NEW_PASSWORD},
              {"token": "$RESET_TOKEN", "new_password": "short"}],
    "update_me": [{"username": "renamed_user"},
                  {"email": "new@example.com", "current_password": USER_PASSWORD},
                  {"mobile_number": "+15550101234", "current_password": USER_PASSWORD},
                  {"mobile_number": None}],
    "delete_me": [{"password": USER_PASSWORD}, {"password": "wrong"}],
    "change_password": [{"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD}],
    "admin_update": [{"is_active": False}, {"is_admin": True, "email_verified": True},
                     {"is_active": "no"}],
    "admin_revoke": [{}],
    "mfa_enrol": [{"password": USER_PASSWORD}],
    "mfa_confirm": [{"code": "123456"}, {"code": "12345a"}],
    "mfa_recovery": [{"code": "123456"}],
    "mfa_disable": [{"password": USER_PASSWORD, "code": "123456"},
                    {"password": USER_PASSWORD, "code": "abcd-efgh-ijkl-mnop"}],
    "mfa_verify": [{"mfa_token": "no-such-token", "code": "123456", "device_name": "phone"},
                   {"mfa_token": "$MFA_TOKEN", "code": "$TOTP_CODE"},
                   {"mfa_token": "$MFA_TOKEN", "code": "$RECOVERY_CODE", "device_name": "laptop"}],
    "admin_mfa_disable": [{}],
}

JSON_PATHS = {
    "register": ("POST", "/api/v1/auth/register", None),
    "login": ("POST", "/api/v1/auth/login", None),
    "refresh": ("POST", "/api/v1/auth/refresh", None),
    "logout": ("POST", "/api/v1/auth/logout", "$USER_ACCESS"),
    "logout_all": ("POST", "/api/v1/auth/logout-all", "$USER_ACCESS"),
    "verify_request": ("POST", "/api/v1/auth/email/verify-request", "$USER_ACCESS"),
    "verify": ("POST", "/api/v1/auth/email/verify", None),
    "forgot": ("POST", "/api/v1/auth/password/forgot", None),
    "reset": ("POST", "/api/v1/auth/password/reset", None),
    "update_me": ("PATCH", "/api/v1/users/me", "$USER_ACCESS"),
    "delete_me": ("DELETE", "/api/v1/users/me", "$USER_ACCESS"),
    "change_password": ("POST", "/api/v1/users/me/password", "$USER_ACCESS"),
    "admin_update": ("PATCH", "/api/v1/admin/users/$USER_ID", "$ADMIN_ACCESS"),
    "admin_revoke": ("DELETE", "/api/v1/admin/users/$USER_ID/sessions", "$ADMIN_ACCESS"),
    "mfa_enrol": ("POST", "/api/v1/users/me/mfa/totp", "$USER_ACCESS"),
    "mfa_confirm": ("POST", "/api/v1/users/me/mfa/totp/confirm", "$USER_ACCESS"),
    "mfa_recovery": ("POST", "/api/v1/users/me/mfa/recovery-codes", "$USER_ACCESS"),
    "mfa_disable": ("DELETE", "/api/v1/users/me/mfa", "$USER_ACCESS"),
    "mfa_verify": ("POST", "/api/v1/auth/mfa/verify", None),
    "admin_mfa_disable": ("DELETE", "/api/v1/admin/users/$USER_ID/mfa", "$ADMIN_ACCESS"),
}

FORMS = [
    f"grant_type=password&username=fuzz_user&password={USER_PASSWORD.replace('#', '%23')}",
    "grant_type=password&username=fuzz%40example.com&password=wrong&scope=openid",
    "grant_type=refresh_token&refresh_token=$USER_REFRESH",
    "grant_type=client_credentials",
    "grant_type=password&username=fuzz_user",
]


def request(method, target, headers=(), body=b""):
    head = f"{method} {target}\n" + "".join(f"{name}: {value}\n" for name, value in headers)
    return head.encode() + b"\n" + (body if isinstance(body, bytes) else body.encode())


def json_request(name, body):
    method, path, bearer = JSON_PATHS[name]
    headers = [("content-type", "application/json")]
    if bearer:
        headers.append(("authorization", f"Bearer {bearer}"))
    return request(method, path, headers, json.dumps(body))


def ndjson(lines):
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def http_requests():
    user = [("authorization", "Bearer $USER_ACCESS")]
    admin = [("authorization", "Bearer $ADMIN_ACCESS")]
    seeds = [
        request("GET", "/health"),
        request("GET", "/openapi.json"),
        request("GET", "/docs"),
        request("GET", "/docs/assets/swagger-ui.css"),
        request("GET", "/.well-known/jwks.json", [("x-fuzz-setting", "jwt_algorithm=EdDSA")]),
        request("GET", "/api/v1/validation-rules", [("x-fuzz-setting", "password_policy=nist")]),
        request("GET", "/api/v1/validation-rules?access_token=$USER_ACCESS"),
        request("DELETE", "/health"),
        request("GET", "/nope"),
        request("OPTIONS", "/api/v1/auth/login", [
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("x-fuzz-setting", "cors_origins=https://app.example.com")]),
        request("GET", "/api/v1/users/me", user),
        request("GET", "/api/v1/users/me", [("authorization", "Bearer garbage")]),
        request("GET", "/api/v1/users/me", [("authorization", "Basic Zm9vOmJhcg==")]),
        request("GET", "/api/v1/sessions", user),
        request("DELETE", "/api/v1/sessions/some-session?secret=q-s3cret", user),
        request("GET", "/api/v1/admin/users?limit=2&q=fuzz", admin),
        request("GET", "/api/v1/admin/users?limit=0&cursor=bogus", admin),
        request("GET", "/api/v1/admin/users/$USER_ID", admin),
        request("DELETE", "/api/v1/admin/users/$USER_ID", admin),
        request("GET", "/api/v1/admin/audit?limit=5&user_id=$USER_ID&event=login", admin),
        request("GET", "/api/v1/admin/audit?cursor=x", admin),
        request("GET", "/verify-email?token=$VERIFY_TOKEN"),
        request("POST", "/verify-email", [("content-type", "application/x-www-form-urlencoded")],
                "token=$VERIFY_TOKEN"),
        request("GET", "/reset-password?token=no-such-token"),
        request("POST", "/reset-password", [("content-type", "application/x-www-form-urlencoded")],
                f"token=$RESET_TOKEN&new_password={NEW_PASSWORD.replace('#', '%23')}&confirm_password={NEW_PASSWORD.replace('#', '%23')}"),
        request("POST", "/api/v1/auth/login", [
            ("content-type", "application/json"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
            ("user-agent", "fuzzer/1.0"),
            ("x-fuzz-setting", "trusted_proxies=203.0.113.0/24")],
            json.dumps({"login": "fuzz_user", "password": USER_PASSWORD})),
        request("POST", "/api/v1/auth/register", [
            ("content-type", "application/json"),
            ("x-fuzz-setting", "require_email_verification=true")],
            json.dumps({"username": "new_user", "email": "new@example.com", "password": USER_PASSWORD})),
        request("POST", "/api/v1/auth/token", [("content-type", "application/x-www-form-urlencoded")],
                FORMS[0]),
        request("POST", "/api/v1/admin/users/import",
                admin + [("content-type", "application/x-ndjson")], ndjson(IMPORT_LINES[:3])),
    ]
    for name, bodies in BODIES.items():
        seeds.extend(json_request(name, body) for body in bodies)
    return seeds


def json_bodies():
    seeds = []
    for name, bodies in BODIES.items():
        index = BODY_ENDPOINTS.index(name)
        seeds.extend(bytes([index]) + json.dumps(body).encode() for body in bodies)
    seeds.append(bytes([BODY_ENDPOINTS.index("import")]) + ndjson(IMPORT_LINES).encode())
    return seeds


def opaque_tokens():
    seeds = []
    for kind, name in enumerate(["$USER_REFRESH", "$VERIFY_TOKEN", "$RESET_TOKEN",
                                 "$VERIFY_TOKEN", "$RESET_TOKEN"]):
        seeds.append(bytes([kind]) + name.encode())
        seeds.append(bytes([kind]) + name.encode() + b"A")
        seeds.append(bytes([kind]) + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    return seeds


MFA_PASSWORD = "Tw0!Factor#Gate"
# What the mfa target's first byte picks (fuzz/fuzz_targets/mfa.rs).
MFA_VERIFY, MFA_REGENERATE, MFA_DISABLE, MFA_MATCHING_STEP = range(4)


def mfa():
    seeds = []
    for code in ["$TOTP_CODE", "$RECOVERY_CODE", " $RECOVERY_CODE\t", "123456", "12345",
                 "abcd-efgh-ijkm-nopq", ""]:
        seeds.append(bytes([MFA_VERIFY]) + f"$MFA_TOKEN\n{code}".encode())
        seeds.append(bytes([MFA_REGENERATE]) + code.encode())
    seeds.append(bytes([MFA_VERIFY]) + b"$MFA_TOKENx\n$TOTP_CODE")
    seeds.append(bytes([MFA_VERIFY]) + b"$USER_REFRESH\n$TOTP_CODE")
    for password, code in [(MFA_PASSWORD, "$TOTP_CODE"), (MFA_PASSWORD, "$RECOVERY_CODE"),
                           ("wrong", "$TOTP_CODE"), (MFA_PASSWORD, "000000")]:
        seeds.append(bytes([MFA_DISABLE]) + f"{password}\n{code}".encode())
    # RFC 6238's SHA-1 secret at T = 59 (code 287082 of step 1), and near the clock's ends.
    for now, last, code in [(59, 0, b"287082"), (59, 1, b"287082"), (-31, -5, b"000000"),
                            (2**63 - 1, 0, b"123456"), (-2**63, -2**63, b"12345")]:
        seeds.append(bytes([MFA_MATCHING_STEP]) + struct.pack("<qq", now, last)
                     + bytes([len(code)]) + code + b"12345678901234567890")
    return seeds


def write(target, seeds):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        if old.startswith("seed-"):
            os.remove(os.path.join(folder, old))
    for number, seed in enumerate(seeds):
        with open(os.path.join(folder, f"seed-{number:03}"), "wb") as file:
            file.write(seed)


def main():
    write("http_request", http_requests())
    write("json_bodies", json_bodies())
    write("token_form", [form.encode() for form in FORMS])
    write("opaque_tokens", opaque_tokens())
    write("mfa", mfa())
    write("import_lines", [ndjson(IMPORT_LINES).encode(),
                           ndjson(IMPORT_LINES[:2]).encode() + b"\r\n\n{\"username\":1}\n[]\n"])
    # access_token, validation, settings and imported_hash take `arbitrary` inputs:
    # their seeds are a few byte strings that decode to varied structures.
    for target in ["access_token", "validation", "settings", "imported_hash"]:
        write(target, [bytes(range(n, n + 64)) for n in (0, 64, 128)] + [b"\x00" * 64, b"\xff" * 64])


if __name__ == "__main__":
    main()
