//! Revocation across hosts (API.md §7: "logout, session revocation, password change or
//! reset ... take effect on the very next request"): two hosts on one database, the
//! revoking request goes to host A, and the very next request with the revoked tokens
//! goes to host B, which has just accepted them (so nothing it may keep can save them).
//! The single-host cases are in `sessions`; deactivation across hosts is in `admin`.

use crate::session_client::{
    LOGOUT, LOGOUT_ALL, NEW_PASSWORD, assert_dead, assert_live, assert_refresh_dead, assert_status,
    change_password, delete_session, login, post_bearer, refresh, refresh_ok, register, two_hosts,
};
use crate::support::assert_problem;

api_tests! {
    /// Logout through A: the session's access and refresh tokens are refused by B at
    /// once; the user's other session lives on.
    fn logout_through_one_host_ends_the_session_on_another() {
        let (_database, a, b) = two_hosts(&[]);
        let (user, s) = register(&a);
        let other = login(&b, &user);
        assert_live(&b, &s.access, "before the logout");
        assert_status(post_bearer(&a, LOGOUT, &s.access), 204, "logout through A");
        assert_dead(&b, &s.access, "the logged-out session");
        assert_refresh_dead(&b, &s.refresh, "the logged-out session");
        assert_live(&b, &other.access, "the user's other session");
    }

    /// DELETE /sessions/{id} through A: that session's access and refresh tokens are
    /// refused by B at once (tokens B itself issued by a refresh just before).
    fn deleting_a_session_through_one_host_ends_it_on_another() {
        let (_database, a, b) = two_hosts(&[]);
        let (user, caller) = register(&a);
        let victim = refresh_ok(&b, &login(&b, &user).refresh);
        assert_live(&b, &victim.access, "before the deletion");
        assert_status(
            delete_session(&a, &caller.access, &victim.id),
            204,
            "DELETE the session through A",
        );
        assert_dead(&b, &victim.access, "the deleted session");
        assert_refresh_dead(&b, &victim.refresh, "the deleted session");
        assert_live(&b, &caller.access, "the caller's session");
    }

    /// Logout-all through A: every session of the user, wherever it was opened, is
    /// refused by B at once.
    fn logout_all_through_one_host_ends_every_session_on_another() {
        let (_database, a, b) = two_hosts(&[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (user, first) = register(&a);
        let sessions = [first, login(&b, &user), login(&a, &user)];
        for s in &sessions {
            assert_live(&b, &s.access, "before the logout-all");
        }
        assert_status(
            post_bearer(&a, LOGOUT_ALL, &sessions[1].access),
            204,
            "logout-all through A",
        );
        for (i, s) in sessions.iter().enumerate() {
            let what = format!("session {i} after logout-all");
            assert_dead(&b, &s.access, &what);
            assert_refresh_dead(&b, &s.refresh, &what);
        }
    }

    /// A password change through A: the user's other sessions are refused by B at once;
    /// the caller's session and the new password work.
    fn a_password_change_through_one_host_ends_the_other_sessions_on_another() {
        let (_database, a, b) = two_hosts(&[("PORTCULLIS_MAX_SESSIONS", "0")]);
        let (user, caller) = register(&a);
        let others = [login(&b, &user), login(&a, &user)];
        for s in &others {
            assert_live(&b, &s.access, "before the password change");
        }
        assert_status(
            change_password(&a, &caller.access, &user.password, NEW_PASSWORD),
            204,
            "password change through A",
        );
        for (i, s) in others.iter().enumerate() {
            let what = format!("other session {i} after the password change");
            assert_dead(&b, &s.access, &what);
            assert_refresh_dead(&b, &s.refresh, &what);
        }
        assert_live(&b, &caller.access, "the session that changed the password");
        b.login_ok(&user.username, NEW_PASSWORD);
    }

    /// A spent refresh token presented again through A (401 `refresh_token_reused`)
    /// revokes the session on B at once: the successor B issued is refused there.
    fn refresh_token_reuse_through_one_host_revokes_the_session_on_another() {
        let (_database, a, b) = two_hosts(&[]);
        let (_, s) = register(&a);
        let successor = refresh_ok(&b, &s.refresh);
        assert_live(&b, &successor.access, "the successor, before the reuse");
        assert_problem(refresh(&a, &s.refresh), 401, "refresh_token_reused");
        assert_dead(&b, &successor.access, "the successor after the reuse");
        assert_refresh_dead(&b, &successor.refresh, "the successor after the reuse");
        assert_dead(&b, &s.access, "the first access token after the reuse");
    }
}
