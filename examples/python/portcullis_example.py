"""Runs the Portcullis component inside Python (wasmtime-py) and walks one account
through its life: register → login → verify → list sessions → refresh → reuse of a spent
refresh token (refused, the session revoked) → change password → revoke a session →
logout → logout everywhere. Every step's result is checked; any mismatch ends the program
with exit code 1.

The component is the portable `.wasm` (built by `cargo run --release -p
portcullis-spin-compose`); PORTCULLIS_COMPONENT_WASM names another file.
"""

import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, Variant

from store import SqliteStore
from store import INTERFACE as STORE_INTERFACE

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WASM = ROOT / "target/component/portcullis-portable.wasm"
API = "portcullis:auth/api@0.1.0"
CONFIG = "wasi:config/store@0.2.0-draft-2024-09-27"

PASSWORD = "Tr1cky!Horse#42"
NEW_PASSWORD = "An0ther!Horse#7"


class ApiError(Exception):
    """An `error` of the `api` interface: `tag` is the case, `payload` its value."""

    def __init__(self, variant: Variant) -> None:
        super().__init__(f"{variant.tag}: {variant.payload!r}")
        self.tag = variant.tag
        self.payload = variant.payload


def record(**fields: Any) -> Record:
    """A WIT record from keyword arguments (`device_info` becomes `device-info`)."""
    value = Record()
    for name, field in fields.items():
        setattr(value, name.replace("_", "-"), field)
    return value


def field(value: Record, name: str) -> Any:
    """A field of a WIT record by its snake_case name."""
    return getattr(value, name.replace("_", "-"))


class Portcullis:
    """The component's `portcullis:auth/api` exports as Python methods.

    `settings` maps the component's setting names (`jwt_secret`, `max_sessions` … as in
    the README's settings table, without `PORTCULLIS_`, lower-case) to their values.
    """

    def __init__(self, wasm: Path, store: SqliteStore, settings: dict) -> None:
        engine = Engine()
        self.store = Store(engine)
        # The standard WASI imports, in a sandbox: no files, environment or arguments.
        # `wasi:http/types` is imported for the component's HTTP handler export, which an
        # embedder need not call but must link.
        self.store.set_wasi(WasiConfig())
        self.store.set_wasi_http()
        linker = Linker(engine)
        linker.add_wasip2()
        linker.add_wasi_http()
        with linker.root() as root:
            with root.add_instance(STORE_INTERFACE) as instance:
                store.add_to(instance)
            with root.add_instance(CONFIG) as instance:
                pairs = list(settings.items())
                instance.add_func("get", lambda _store, key: settings.get(key))
                instance.add_func("get-all", lambda _store: pairs)
        component = Component.from_file(engine, str(wasm))
        self.instance = linker.instantiate(self.store, component)
        self.api = self.instance.get_export_index(self.store, API)

    def call(self, name: str, *params: Any) -> Any:
        """Calls an export returning `result<T, error>`: `T`, or raises `ApiError`.

        wasmtime-py gives a `result` as the bare `ok` value or the bare `err` value when
        their Python types differ (`error` is always a `Variant`), and as
        `Variant("ok" | "err", value)` when both are variants (`register`).
        """
        index = self.instance.get_export_index(self.store, name, self.api)
        func = self.instance.get_func(self.store, index)
        outcome = func(self.store, *params)
        if not isinstance(outcome, Variant):
            return outcome
        if outcome.tag == "ok":
            return outcome.payload
        raise ApiError(outcome.payload if outcome.tag == "err" else outcome)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """`api.verify_access_token(t)` calls the export `verify-access-token`."""
        return lambda *params: self.call(name.replace("_", "-"), *params)


class Scenario:
    """Numbered, checked steps."""

    def __init__(self) -> None:
        self.steps = 0

    def step(self, name: str, check: Callable[[], Any]) -> Any:
        result = check()
        self.steps += 1
        print(f"ok {self.steps} - {name}")
        return result


def refused(operation: Callable[[], Any], tag: str) -> Any:
    """Runs `operation`, which must fail with the API error case `tag`; returns its payload."""
    try:
        operation()
    except ApiError as error:
        if error.tag == tag:
            return error.payload
        raise AssertionError(f"expected error {tag}, got {error}") from error
    raise AssertionError(f"expected error {tag}, but the call succeeded")


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def scenario(api: Portcullis) -> int:
    """Runs every step; returns how many passed (an `AssertionError` stops it)."""
    run = Scenario()
    laptop = record(device_info="python example", ip_address="203.0.113.7")
    phone = record(device_info="phone", ip_address="198.51.100.4")

    def check_settings() -> None:
        # `result<_, list<string>>` arrives untagged: `None`, or the list of problems.
        problems = api.check_settings()
        expect(problems is None, f"bad settings: {problems}")

    run.step("check-settings accepts the settings", check_settings)

    def weak_password() -> None:
        weak = record(username="jane", email="jane@example.com", password="Password123!",
                      mobile_number=None)
        errors = refused(lambda: api.register(weak, phone), "validation-failed")
        expect(any(e.field == "password" and e.code == "common_password" for e in errors),
               f"no common_password error in {errors}")

    run.step("a common password is refused with its field code", weak_password)

    registration = record(username="john_doe", email="John@Example.com", password=PASSWORD,
                          mobile_number=None)

    def register() -> Record:
        registered = api.register(registration, phone)
        expect(registered.tag == "signed-in", f"not signed in: {registered}")
        tokens = registered.payload
        expect(field(tokens, "token_type") == "Bearer", "token type")
        expect(tokens.user.email == "john@example.com", "email not lower-cased")
        return tokens

    first = run.step("register signs the account in", register)
    user_id = first.user.id

    def taken() -> None:
        again = record(username="john_doe", email="other@example.com", password=PASSWORD,
                       mobile_number=None)
        refused(lambda: api.register(again, phone), "username-taken")

    run.step("the same username again is username-taken", taken)
    run.step("a wrong password is invalid-credentials",
             lambda: refused(lambda: api.login("john_doe", "Wrong!Horse#42", laptop),
                             "invalid-credentials"))

    def login() -> Record:
        tokens = api.login("john@example.com", PASSWORD, laptop)
        expect(tokens.user.id == user_id, "another user")
        expect(field(tokens, "session_id") != field(first, "session_id"), "same session")
        return tokens

    second = run.step("login by email opens a second session", login)
    second_session = field(second, "session_id")

    def verify() -> None:
        verified = api.verify_access_token(field(second, "access_token"))
        expect(field(verified, "user_id") == user_id, "user id")
        expect(field(verified, "session_id") == second_session, "session id")
        expect(verified.user.username == "john_doe", "username")

    run.step("verify-access-token returns the user and the session", verify)

    def sessions() -> None:
        listed = api.list_sessions(field(second, "access_token"))
        expect(len(listed) == 2, f"{len(listed)} sessions")
        current = [s for s in listed if field(s, "is_current")]
        expect(len(current) == 1 and current[0].id == second_session, "current session")
        expect(field(current[0], "device_info") == "python example", "device info")
        expect(field(current[0], "ip_address") == "203.0.113.7", "ip address")

    run.step("list-sessions shows both sessions, this one current", sessions)

    def refresh() -> Record:
        tokens = api.refresh(field(second, "refresh_token"), laptop)
        expect(field(tokens, "session_id") == second_session, "session changed")
        expect(field(tokens, "refresh_token") != field(second, "refresh_token"), "not rotated")
        verified = api.verify_access_token(field(tokens, "access_token"))
        expect(field(verified, "session_id") == second_session, "new token's session")
        return tokens

    refreshed = run.step("refresh rotates the refresh token", refresh)
    run.step("the spent refresh token again is refresh-token-reused",
             lambda: refused(lambda: api.refresh(field(second, "refresh_token"), laptop),
                             "refresh-token-reused"))

    def revoked_by_reuse() -> None:
        refused(lambda: api.verify_access_token(field(refreshed, "access_token")),
                "invalid-token")
        refused(lambda: api.refresh(field(refreshed, "refresh_token"), laptop),
                "invalid-refresh-token")

    run.step("reuse revoked the whole session", revoked_by_reuse)

    first_access = field(first, "access_token")
    run.step("change-password needs the current password",
             lambda: refused(lambda: api.change_password(first_access, "Wrong!Horse#42",
                                                         NEW_PASSWORD, phone),
                             "invalid-credentials"))

    def change_password() -> None:
        api.change_password(first_access, PASSWORD, NEW_PASSWORD, phone)
        refused(lambda: api.login("john_doe", PASSWORD, laptop), "invalid-credentials")
        verified = api.verify_access_token(first_access)
        expect(field(verified, "session_id") == field(first, "session_id"), "session kept")

    run.step("change-password takes the new password", change_password)
    run.step("revoke-session of an unknown session is not-found",
             lambda: refused(lambda: api.revoke_session(first_access, "no-such-session", phone),
                             "not-found"))

    def logout() -> None:
        api.logout(first_access, phone)
        refused(lambda: api.verify_access_token(first_access), "invalid-token")

    run.step("logout ends the session at once", logout)

    def logout_all() -> None:
        on_laptop = api.login("john_doe", NEW_PASSWORD, laptop)
        on_phone = api.login("john_doe", NEW_PASSWORD, phone)
        laptop_access = field(on_laptop, "access_token")
        api.revoke_session(laptop_access, field(on_phone, "session_id"), laptop)
        refused(lambda: api.verify_access_token(field(on_phone, "access_token")),
                "invalid-token")
        expect(len(api.list_sessions(laptop_access)) == 1, "one session left")
        api.logout_all(laptop_access, laptop)
        refused(lambda: api.list_sessions(laptop_access), "invalid-token")

    run.step("logout-all ends every session", logout_all)

    def get_user() -> None:
        expect(api.get_user(user_id).username == "john_doe", "username")
        refused(lambda: api.get_user("no-such-id"), "not-found")

    run.step("get-user still reads the account", get_user)
    return run.steps


def main() -> int:
    wasm = Path(os.environ.get("PORTCULLIS_COMPONENT_WASM", DEFAULT_WASM)).resolve()
    if not wasm.is_file():
        print(f"{wasm} does not exist: build it with `cargo run --release -p portcullis-spin-compose` "
              "or set PORTCULLIS_COMPONENT_WASM", file=sys.stderr)
        return 1
    settings = {
        "jwt_secret": os.environ.get("PORTCULLIS_JWT_SECRET", secrets.token_hex(32)),
        "max_sessions": "3",
    }
    api = Portcullis(wasm, SqliteStore(ROOT / "migrations/sqlite"), settings)
    try:
        steps = scenario(api)
    except (AssertionError, ApiError) as failure:
        print(f"python example failed: {failure!r}", file=sys.stderr)
        return 1
    print(f"python example: all {steps} steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
