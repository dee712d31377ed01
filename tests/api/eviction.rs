//! The device limit's `evict_oldest` policy (API.md §1 `PORTCULLIS_MAX_SESSIONS`) when
//! logins come faster than the clock's second: a login never evicts its own session,
//! whatever its id sorts like against sessions opened in the same second. The basic
//! eviction and rejection cases, and concurrent logins, are in `sessions`. (That an
//! expired session is not reported as evicted is not tested: `PORTCULLIS_REFRESH_TTL`
//! is at least 60 s, too long to wait for.)

use serde_json::Value;

use crate::session_client::{
    SESSIONS, assert_dead, assert_live, login, refresh_ok, register, two_hosts,
};
use crate::support::{TestApp, json_body};

/// Logins, one right after another.
const LOGINS: usize = 10;

/// The ids of the sessions `GET /api/v1/sessions` lists for `access`.
fn listed_ids(app: &TestApp, access: &str) -> Vec<Value> {
    let list = json_body(app.get_with_token(SESSIONS, access), 200);
    list["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no `sessions` array: {list}"))
        .iter()
        .map(|s| s["id"].clone())
        .collect()
}

api_tests! {
    /// MAX_SESSIONS=1: ten logins in quick succession, alternating between two hosts on
    /// one database. Each login's own tokens work at once (on the other host), the
    /// session before it is evicted, and only the newest session is listed.
    fn with_one_place_each_quick_login_keeps_its_own_session() {
        let (_database, a, b) = two_hosts(&[("PORTCULLIS_MAX_SESSIONS", "1")]);
        let (user, mut newest) = register(&a);
        for i in 0..LOGINS {
            let (through, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let session = login(through, &user);
            assert_live(other, &session.access, &format!("login {i}, right after it"));
            assert_dead(other, &newest.access, &format!("the session before login {i}"));
            newest = session;
        }
        assert_eq!(
            listed_ids(&a, &newest.access),
            vec![Value::String(newest.id.clone())],
            "only the newest session is listed"
        );
        let next = refresh_ok(&b, &newest.refresh);
        assert_live(&a, &next.access, "the newest session, refreshed");
    }
}
