//! Conformance checks of the accounts part of [`crate::ServerStore`]: [`AccountStore`].
//!
//! Each check takes a fresh, empty store (the race checks: two stores, *instances*, opened on one
//! fresh database) and panics with a message naming what differed. A backend's test calls them:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread")]
//! async fn sessions_expire() {
//!     pushguide_store::conformance::accounts::sessions_expire(&open_a_fresh_store().await).await;
//! }
//! ```
//!
//! - [`users`] — adding (once, unless replaced), listing in byte order, regrouping, deleting with
//!   sessions and tokens, the typed errors [`Error::UserExists`] and [`Error::NoSuchUser`];
//! - [`external_users`] — a reverse proxy's users: [`NO_PASSWORD`], groups follow the proxy, a local
//!   account keeps its password;
//! - [`sessions_expire`] — idle and absolute expiry decided on the `now` the caller passes, deletion
//!   and purging;
//! - [`api_tokens`] — creation for existing users only, listing, expiry, `last_used`, revocation;
//! - [`audit_log`] — increasing sequence numbers, newest first, keyset paging, a user's entries;
//! - [`template_revisions`] — numbering per template, a stale base refused, removal, and
//!   [`AccountStore::check_writable`] leaving nothing behind;
//! - [`user_creation_race`], [`revision_race`], [`token_creation_race`], [`sessions_are_shared`] —
//!   two instances on one database: of two creations of one user exactly one succeeds, of two saves
//!   on one base exactly one is stored, two tokens created at once are both stored, and what one
//!   instance deletes is gone for the other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{AccountStore, AuditEntry, Error, RevisionWrite, SessionLimits, NO_PASSWORD};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

const LIMITS: SessionLimits = SessionLimits {
    idle: Duration::from_secs(600),
    max: Duration::from_secs(3600),
};

/// A fixed instant `secs` after a base time (whole milliseconds, as every store keeps them).
fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Users: added once unless replaced, listed by name in byte order, regrouped, deleted with their
/// sessions and API tokens; unknown users are [`Error::NoSuchUser`].
pub async fn users(store: &dyn AccountStore) {
    let s = store;
    assert!(
        s.user("alice").await.expect("reading a user").is_none(),
        "a fresh store has no user alice"
    );
    assert!(s.users().await.expect("listing").is_empty(), "fresh store");
    s.put_user("alice", HASH, &strings(&["ops"]), false, t(0))
        .await
        .expect("adding alice");
    let u = s
        .user("alice")
        .await
        .expect("reading alice")
        .expect("alice");
    assert_eq!(
        (
            u.name.as_str(),
            u.password_hash.as_str(),
            u.groups.clone(),
            u.created
        ),
        ("alice", HASH, strings(&["ops"]), t(0)),
        "alice as stored"
    );
    let dbg = format!("{u:?}");
    assert!(!dbg.contains("argon2id"), "Debug shows the hash: {dbg}");

    // the same name again, without replace: refused, nothing changed
    let err = s
        .put_user("alice", "other", &[], false, t(1))
        .await
        .expect_err("adding alice twice without replace must be refused");
    assert!(
        matches!(err, Error::UserExists { ref name, .. } if name == "alice"),
        "adding alice twice: expected UserExists naming alice, got {err:?}"
    );
    assert!(err.to_string().contains("`alice`"), "message: {err}");
    let u = s.user("alice").await.expect("reading").expect("alice");
    assert_eq!(
        (u.password_hash.as_str(), u.created),
        (HASH, t(0)),
        "a refused add changed alice"
    );

    // replacing ends the user's sessions
    s.create_session("tok-a", "alice", "csrf", t(1))
        .await
        .expect("session");
    s.put_user("alice", "new", &strings(&["dev", "qa"]), true, t(2))
        .await
        .expect("replacing alice");
    let u = s.user("alice").await.expect("reading").expect("alice");
    assert_eq!(
        (u.password_hash.as_str(), u.groups.clone(), u.created),
        ("new", strings(&["dev", "qa"]), t(2)),
        "alice after replace"
    );
    assert!(
        s.session("tok-a", LIMITS, t(3))
            .await
            .expect("session")
            .is_none(),
        "replacing a user must end their sessions"
    );

    // listed by name, compared as bytes (upper case before lower case), empty groups kept empty
    s.put_user("bob", HASH, &[], false, t(3))
        .await
        .expect("bob");
    s.put_user("Zed", HASH, &strings(&["b", "a"]), false, t(4))
        .await
        .expect("Zed");
    let all = s.users().await.expect("listing");
    assert_eq!(
        all.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["Zed", "alice", "bob"],
        "users are listed by name in byte order"
    );
    assert_eq!(all[0].groups, ["b", "a"], "groups keep their order");
    assert!(all[2].groups.is_empty(), "bob has no groups");

    // regrouping: seen by the user's live sessions at once; unknown users are NoSuchUser
    s.create_session("tok-b", "bob", "c", t(3))
        .await
        .expect("session");
    s.set_user_groups("bob", &strings(&["ops", "qa"]))
        .await
        .expect("regrouping bob");
    let sess = s
        .session("tok-b", LIMITS, t(4))
        .await
        .expect("session")
        .expect("bob's session survives a group change");
    assert_eq!(
        sess.groups,
        ["ops", "qa"],
        "the session sees the new groups"
    );
    let err = s
        .set_user_groups("carol", &[])
        .await
        .expect_err("regrouping an unknown user");
    assert!(
        matches!(err, Error::NoSuchUser { ref name, .. } if name == "carol"),
        "regrouping carol: expected NoSuchUser naming carol, got {err:?}"
    );
    assert!(err.to_string().contains("`carol`"), "message: {err}");

    // deleting: sessions and tokens go with the user
    s.create_api_token("b1", "hash-b1", "bob", "ci", t(4), None)
        .await
        .expect("token");
    assert!(
        s.delete_user("bob").await.expect("deleting bob"),
        "bob existed"
    );
    assert!(
        !s.delete_user("bob").await.expect("deleting bob again"),
        "bob is gone"
    );
    assert!(
        s.user("bob").await.expect("reading").is_none(),
        "bob deleted"
    );
    assert!(
        s.session("tok-b", LIMITS, t(5))
            .await
            .expect("session")
            .is_none(),
        "a deleted user's session must end"
    );
    assert!(
        s.api_token("b1").await.expect("token").is_none(),
        "a deleted user's API token must go"
    );
    assert!(
        s.api_token_user("hash-b1", t(5))
            .await
            .expect("token")
            .is_none(),
        "a deleted user's API token must not authenticate"
    );
}

/// A trusted reverse proxy's users: added with [`NO_PASSWORD`], their groups set to what the proxy
/// sends; an existing local account keeps its password (and its creation time).
pub async fn external_users(store: &dyn AccountStore) {
    let s = store;
    s.external_user("carol", &strings(&["devs"]), t(0))
        .await
        .expect("proxy user carol");
    let u = s.user("carol").await.expect("reading").expect("carol");
    assert_eq!(
        (u.password_hash.as_str(), u.groups.clone(), u.created),
        (NO_PASSWORD, strings(&["devs"]), t(0)),
        "a new proxy user"
    );
    s.external_user("carol", &strings(&["ops"]), t(5))
        .await
        .expect("carol again");
    let u = s.user("carol").await.expect("reading").expect("carol");
    assert_eq!(
        (u.groups.clone(), u.created),
        (strings(&["ops"]), t(0)),
        "the proxy's groups replace the stored ones; created stays"
    );
    // the same groups again: nothing to change
    s.external_user("carol", &strings(&["ops"]), t(6))
        .await
        .expect("carol unchanged");
    assert_eq!(
        s.user("carol")
            .await
            .expect("reading")
            .expect("carol")
            .groups,
        ["ops"]
    );
    s.put_user("alice", HASH, &[], false, t(0))
        .await
        .expect("alice");
    s.external_user("alice", &strings(&["ops"]), t(1))
        .await
        .expect("alice by the proxy");
    let a = s.user("alice").await.expect("reading").expect("alice");
    assert_eq!(
        (a.password_hash.as_str(), a.groups.clone()),
        (HASH, strings(&["ops"])),
        "a local account keeps its password and takes the proxy's groups"
    );
}

/// Sessions: idle and absolute expiry computed from the `now` passed in, an expired session deleted
/// for good, `last_seen` reported as before the lookup and never moved back, deletion, purging.
pub async fn sessions_expire(store: &dyn AccountStore) {
    let s = store;
    s.put_user("alice", HASH, &strings(&["ops"]), false, t(0))
        .await
        .expect("alice");
    s.create_session("a", "alice", "csrf-a", t(0))
        .await
        .expect("session a");
    // used every 500 s (under idle), it lives until the absolute limit
    let mut at = 0;
    let mut seen = t(0);
    while at + 500 <= 3600 {
        at += 500;
        let got = s
            .session("a", LIMITS, t(at))
            .await
            .expect("reading session a")
            .unwrap_or_else(|| panic!("session a used every 500 s ended at {at} s"));
        assert_eq!(
            (got.user.as_str(), got.csrf.as_str(), got.groups.clone()),
            ("alice", "csrf-a", strings(&["ops"])),
            "session a at {at} s"
        );
        assert_eq!(got.created, t(0), "created at {at} s");
        assert_eq!(got.last_seen, seen, "last_seen before the lookup at {at} s");
        assert!(
            !format!("{got:?}").contains("csrf-a"),
            "Debug shows the CSRF token"
        );
        seen = t(at);
    }
    // exactly at the limit a session lives; past it, it ends
    assert!(
        s.session("a", LIMITS, t(3600))
            .await
            .expect("session a")
            .is_some(),
        "session a at exactly the absolute limit"
    );
    assert!(
        s.session("a", LIMITS, t(3601))
            .await
            .expect("session a")
            .is_none(),
        "session a past the absolute limit"
    );
    assert!(
        s.session("a", LIMITS, t(1))
            .await
            .expect("session a")
            .is_none(),
        "an expired session is deleted for good"
    );

    s.create_session("b", "alice", "csrf-b", t(0))
        .await
        .expect("session b");
    assert!(
        s.session("b", LIMITS, t(600))
            .await
            .expect("session b")
            .is_some(),
        "session b at exactly the idle limit"
    );
    // a lookup with an older `now` does not move last_seen back
    let got = s
        .session("b", LIMITS, t(100))
        .await
        .expect("session b")
        .expect("session b with an older now");
    assert_eq!(got.last_seen, t(600), "last_seen moved back");
    assert!(
        s.session("b", LIMITS, t(1200))
            .await
            .expect("session b")
            .is_some(),
        "session b 600 s after its last use"
    );
    assert!(
        s.session("b", LIMITS, t(1801))
            .await
            .expect("session b")
            .is_none(),
        "session b past the idle limit"
    );

    assert!(
        s.session("unknown", LIMITS, t(0))
            .await
            .expect("unknown session")
            .is_none(),
        "an unknown session"
    );
    s.create_session("c", "alice", "x", t(0)).await.expect("c");
    assert!(
        s.delete_session("c").await.expect("deleting c"),
        "c existed"
    );
    assert!(
        !s.delete_session("c").await.expect("deleting c again"),
        "c is gone"
    );
    assert!(
        s.session("c", LIMITS, t(1)).await.expect("c").is_none(),
        "a deleted session"
    );
    assert!(
        s.create_session("d", "nobody", "x", t(0)).await.is_err(),
        "a session of an unknown user must be refused"
    );

    // purge: d idle too long, e fresh, f past the absolute limit though used recently
    s.create_session("d", "alice", "x", t(0)).await.expect("d");
    s.create_session("e", "alice", "x", t(900))
        .await
        .expect("e");
    s.create_session("f", "alice", "x", t(0)).await.expect("f");
    for at in [500, 1000, 1500, 2000, 2500, 3000, 3500] {
        assert!(
            s.session("f", LIMITS, t(at)).await.expect("f").is_some(),
            "f at {at} s"
        );
    }
    assert_eq!(
        s.purge_sessions(LIMITS, t(1000)).await.expect("purge"),
        1,
        "purging at 1000 s ends d only"
    );
    assert!(
        s.session("e", LIMITS, t(1000)).await.expect("e").is_some(),
        "purging ended the fresh session e"
    );
    assert_eq!(
        s.purge_sessions(LIMITS, t(3700)).await.expect("purge"),
        2,
        "purging at 3700 s ends e (idle) and f (absolute)"
    );
    assert_eq!(
        s.purge_sessions(LIMITS, t(3700)).await.expect("purge"),
        0,
        "nothing left to purge"
    );
}

/// API tokens: created for existing users only, listed newest first, found by id, authenticating
/// by hash until expiry (exclusive), revocation or their user's deletion, with the user's groups now;
/// `last_used` updated at most once a minute.
pub async fn api_tokens(store: &dyn AccountStore) {
    let s = store;
    s.put_user("alice", "h", &strings(&["ops"]), false, t(0))
        .await
        .expect("alice");
    s.put_user("bob", "h", &strings(&["devs"]), false, t(0))
        .await
        .expect("bob");
    let err = s
        .create_api_token("x", "hx", "carol", "ci", t(0), None)
        .await
        .expect_err("a token of an unknown user");
    assert!(
        matches!(err, Error::NoSuchUser { ref name, .. } if name == "carol"),
        "a token of carol: expected NoSuchUser naming carol, got {err:?}"
    );
    assert!(s.api_token("x").await.expect("token").is_none(), "x stored");

    let a = s
        .create_api_token("a1", "ha1", "alice", "ci", t(1), None)
        .await
        .expect("a1");
    assert_eq!(
        (a.id.as_str(), a.user.as_str(), a.label.as_str(), a.created),
        ("a1", "alice", "ci", t(1)),
        "a1 as created"
    );
    assert_eq!((a.last_used, a.expires), (None, None), "a1 as created");
    let a2 = s
        .create_api_token("a2", "ha2", "alice", "short", t(2), Some(t(100)))
        .await
        .expect("a2");
    assert_eq!(a2.expires, Some(t(100)), "a2's expiry");
    s.create_api_token("b1", "hb1", "bob", "bob's", t(3), None)
        .await
        .expect("b1");
    // two tokens created at the same time are listed by id
    s.create_api_token("a0", "ha0", "alice", "twin", t(2), None)
        .await
        .expect("a0");
    assert!(
        s.create_api_token("a9", "ha1", "alice", "same hash", t(4), None)
            .await
            .is_err(),
        "a second token with a1's hash must be refused"
    );
    assert_eq!(
        s.api_token("a1").await.expect("a1").as_ref(),
        Some(&a),
        "a1 read back"
    );
    let ids = |v: Vec<crate::ApiToken>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.api_tokens(None).await.expect("list")),
        ["b1", "a0", "a2", "a1"],
        "every token, newest first, then by id"
    );
    assert_eq!(
        ids(s.api_tokens(Some("alice")).await.expect("list")),
        ["a0", "a2", "a1"],
        "alice's tokens"
    );
    let dbg = format!("{:?}", s.api_tokens(None).await.expect("list"));
    assert!(
        !dbg.contains("ha2"),
        "a listing shows a token's hash: {dbg}"
    );

    let got = s
        .api_token_user("ha1", t(10))
        .await
        .expect("a1 authenticates")
        .expect("a1 is valid");
    assert_eq!(
        (
            got.token.id.as_str(),
            got.token.user.as_str(),
            got.groups.clone()
        ),
        ("a1", "alice", strings(&["ops"])),
        "a1's user"
    );
    assert_eq!(got.token.last_used, None, "last_used as before this use");
    assert_eq!(
        s.api_token("a1").await.expect("a1").expect("a1").last_used,
        Some(t(10)),
        "a1 marked used"
    );
    // used again within a minute: last_used stays; a minute later it moves
    s.api_token_user("ha1", t(30))
        .await
        .expect("a1")
        .expect("a1");
    assert_eq!(
        s.api_token("a1").await.expect("a1").expect("a1").last_used,
        Some(t(10)),
        "a use within a minute moved last_used"
    );
    s.api_token_user("ha1", t(70))
        .await
        .expect("a1")
        .expect("a1");
    assert_eq!(
        s.api_token("a1").await.expect("a1").expect("a1").last_used,
        Some(t(70)),
        "a use a minute later"
    );
    // the user's groups now
    s.set_user_groups("alice", &strings(&["admins"]))
        .await
        .expect("regroup");
    assert_eq!(
        s.api_token_user("ha1", t(71))
            .await
            .expect("a1")
            .expect("a1")
            .groups,
        ["admins"],
        "a token acts with its user's groups now"
    );
    assert!(
        s.api_token_user("nope", t(10))
            .await
            .expect("nope")
            .is_none(),
        "an unknown hash"
    );
    assert!(
        s.api_token_user("ha2", t(99)).await.expect("a2").is_some(),
        "a2 before its expiry"
    );
    assert!(
        s.api_token_user("ha2", t(100)).await.expect("a2").is_none(),
        "a2 at its expiry"
    );
    assert!(
        s.api_token("a2").await.expect("a2").is_some(),
        "an expired token is still listed"
    );

    assert!(
        s.delete_api_token("a1").await.expect("revoke"),
        "a1 existed"
    );
    assert!(
        !s.delete_api_token("a1").await.expect("revoke again"),
        "a1 is gone"
    );
    assert!(
        s.api_token_user("ha1", t(72)).await.expect("a1").is_none(),
        "a revoked token"
    );
    s.delete_user("bob").await.expect("deleting bob");
    assert!(
        s.api_token_user("hb1", t(12)).await.expect("b1").is_none(),
        "a token of a deleted user"
    );
    assert!(
        s.api_tokens(Some("bob")).await.expect("list").is_empty(),
        "bob's tokens"
    );
}

/// The audit log: increasing sequence numbers, newest first, keyset paging by `before`, a user's
/// entries only, every field read back.
pub async fn audit_log(store: &dyn AccountStore) {
    let s = store;
    assert!(
        s.audit_log(None, None, 10).await.expect("log").is_empty(),
        "a fresh log"
    );
    let mut seqs = Vec::new();
    for n in 0..7u64 {
        let who = if n % 2 == 0 { "alice" } else { "bob" };
        let mut e = AuditEntry::new(
            who,
            (n != 3).then(|| "127.0.0.1".to_owned()),
            "publish",
            "shop",
            &n.to_string(),
        );
        e.at = t(n);
        let seq = s.append_audit(&e).await.expect("appending");
        if let Some(last) = seqs.last() {
            assert!(seq > *last, "audit seq {seq} after {last}: not increasing");
        }
        seqs.push(seq);
    }
    let details = |v: &[AuditEntry]| v.iter().map(|e| e.detail.clone()).collect::<Vec<_>>();
    let page = s.audit_log(None, None, 3).await.expect("first page");
    assert_eq!(details(&page), ["6", "5", "4"], "the newest page");
    assert_eq!(page[0].seq, seqs[6], "the newest entry's seq");
    let e = &page[0];
    assert_eq!(
        (
            e.user.as_str(),
            e.address.as_deref(),
            e.action.as_str(),
            e.target.as_str(),
            e.at
        ),
        ("alice", Some("127.0.0.1"), "publish", "shop", t(6)),
        "an entry read back"
    );
    let next = s
        .audit_log(Some(page[2].seq), None, 3)
        .await
        .expect("second page");
    assert_eq!(details(&next), ["3", "2", "1"], "the page before");
    assert_eq!(next[0].address, None, "an entry without an address");
    let last = s
        .audit_log(Some(next[2].seq), None, 3)
        .await
        .expect("last page");
    assert_eq!(details(&last), ["0"], "the last page");
    assert!(
        s.audit_log(Some(seqs[0]), None, 3)
            .await
            .expect("past the end")
            .is_empty(),
        "nothing before the first entry"
    );
    let alice = s.audit_log(None, Some("alice"), 10).await.expect("alice");
    assert_eq!(details(&alice), ["6", "4", "2", "0"], "alice's entries");
    let bob = s
        .audit_log(Some(seqs[5]), Some("bob"), 1)
        .await
        .expect("bob");
    assert_eq!(details(&bob), ["3"], "bob's entry before the sixth");
    assert!(
        s.audit_log(None, Some("carol"), 10)
            .await
            .expect("carol")
            .is_empty(),
        "carol did nothing"
    );
    assert!(
        s.audit_log(None, None, 0)
            .await
            .expect("limit 0")
            .is_empty(),
        "limit 0"
    );
}

/// Template revisions: numbered per template from 1, a save on a stale base refused with the
/// current number, listed newest first up to a limit, removable; `check_writable` leaves nothing.
pub async fn template_revisions(store: &dyn AccountStore) {
    let s = store;
    assert_eq!(s.latest_template_revision("shop").await.expect("latest"), 0);
    let add = |base, user: &'static str, text: &'static str| async move {
        s.add_template_revision(
            "shop",
            base,
            user,
            "shop.toml",
            text,
            t(base.unwrap_or(9) as u64),
        )
        .await
        .unwrap_or_else(|e| panic!("saving {text} on {base:?}: {e}"))
    };
    assert_eq!(
        add(Some(0), "alice", "a").await,
        RevisionWrite::Added(1),
        "first save"
    );
    assert_eq!(
        add(Some(1), "bob", "b").await,
        RevisionWrite::Added(2),
        "on 1"
    );
    assert_eq!(
        add(Some(2), "carol", "c").await,
        RevisionWrite::Added(3),
        "on 2"
    );
    assert_eq!(
        add(Some(2), "bob", "b2").await,
        RevisionWrite::Stale { current: 3 },
        "a second save on 2"
    );
    assert_eq!(
        add(Some(0), "eve", "e").await,
        RevisionWrite::Stale { current: 3 },
        "a save on 'none yet'"
    );
    assert_eq!(
        add(None, "dave", "d").await,
        RevisionWrite::Added(4),
        "no base"
    );
    assert_eq!(
        s.add_template_revision("other", Some(5), "x", "other.toml", "o", t(1))
            .await
            .expect("other on 5"),
        RevisionWrite::Stale { current: 0 },
        "a base on a template without revisions"
    );
    s.add_template_revision("other", Some(0), "x", "other.toml", "o", t(1))
        .await
        .expect("other");
    assert_eq!(s.latest_template_revision("shop").await.expect("latest"), 4);
    assert_eq!(
        s.latest_template_revision("other").await.expect("latest"),
        1
    );
    let all = s.template_revisions("shop", 10).await.expect("list");
    assert_eq!(
        all.iter()
            .map(|r| (r.revision, r.user.as_str(), r.content.as_str()))
            .collect::<Vec<_>>(),
        [
            (4, "dave", "d"),
            (3, "carol", "c"),
            (2, "bob", "b"),
            (1, "alice", "a")
        ],
        "shop's revisions"
    );
    let r = &all[1];
    assert_eq!(
        (r.template.as_str(), r.file.as_str(), r.at),
        ("shop", "shop.toml", t(2)),
        "revision 3 read back"
    );
    assert_eq!(
        s.template_revisions("shop", 2)
            .await
            .expect("list")
            .iter()
            .map(|r| r.revision)
            .collect::<Vec<_>>(),
        [4, 3],
        "limit 2"
    );
    assert!(
        s.template_revisions("none", 10)
            .await
            .expect("list")
            .is_empty(),
        "a template without revisions"
    );
    assert!(
        s.remove_template_revision("shop", 4).await.expect("remove"),
        "revision 4 existed"
    );
    assert!(
        !s.remove_template_revision("shop", 4).await.expect("remove"),
        "revision 4 is gone"
    );
    assert_eq!(
        s.latest_template_revision("shop").await.expect("latest"),
        3,
        "after removing 4"
    );
    assert_eq!(
        add(Some(3), "dave", "d2").await,
        RevisionWrite::Added(4),
        "the removed number is given again"
    );
    s.check_writable().await.expect("the store takes writes");
    assert_eq!(
        s.latest_template_revision("").await.expect("latest"),
        0,
        "check_writable left a row behind"
    );
    assert!(
        s.template_revisions("", 10).await.expect("list").is_empty(),
        "check_writable left a row behind"
    );
}

/// Two instances add the same user at the same moment, `rounds` times: exactly one succeeds, the
/// other gets [`Error::UserExists`], and the stored account is the winner's.
pub async fn user_creation_race(a: &dyn AccountStore, b: &dyn AccountStore, rounds: usize) {
    for round in 0..rounds {
        let name = format!("racer-{round}");
        let (ga, gb) = (strings(&["a"]), strings(&["b"]));
        let (ra, rb) = tokio::join!(
            a.put_user(&name, "hash-a", &ga, false, t(0)),
            b.put_user(&name, "hash-b", &gb, false, t(0)),
        );
        let winner = match (&ra, &rb) {
            (Ok(()), Err(Error::UserExists { name: n, .. })) if *n == name => "hash-a",
            (Err(Error::UserExists { name: n, .. }), Ok(())) if *n == name => "hash-b",
            _ => panic!(
                "round {round}: two instances adding {name}: expected one Ok and one \
                 UserExists, got {ra:?} and {rb:?}"
            ),
        };
        for (which, s) in [("a", a), ("b", b)] {
            let u = s
                .user(&name)
                .await
                .unwrap_or_else(|e| panic!("round {round}: instance {which} reading: {e}"))
                .unwrap_or_else(|| panic!("round {round}: instance {which} lost {name}"));
            assert_eq!(
                u.password_hash, winner,
                "round {round}: instance {which} sees another account than the winner's"
            );
        }
    }
    assert_eq!(
        a.users().await.expect("listing").len(),
        rounds,
        "one account per round"
    );
}

/// Two instances save a revision on the same base at the same moment, `rounds` times: one is
/// stored, the other is told it is stale (with the winner's number).
pub async fn revision_race(a: &dyn AccountStore, b: &dyn AccountStore, rounds: usize) {
    for round in 0..rounds {
        let base = a.latest_template_revision("shop").await.expect("latest");
        assert_eq!(base, round as i64, "round {round}: revisions so far");
        let (ra, rb) = tokio::join!(
            a.add_template_revision("shop", Some(base), "a", "shop.toml", "from a", t(0)),
            b.add_template_revision("shop", Some(base), "b", "shop.toml", "from b", t(0)),
        );
        let (ra, rb) = (
            ra.unwrap_or_else(|e| panic!("round {round}: instance a saving: {e}")),
            rb.unwrap_or_else(|e| panic!("round {round}: instance b saving: {e}")),
        );
        let next = base + 1;
        let stale = RevisionWrite::Stale { current: next };
        let winner = match (ra, rb) {
            (RevisionWrite::Added(n), s) if n == next && s == stale => "from a",
            (s, RevisionWrite::Added(n)) if n == next && s == stale => "from b",
            _ => panic!(
                "round {round}: two saves on base {base}: expected Added({next}) and \
                 Stale {{ current: {next} }}, got {ra:?} and {rb:?}"
            ),
        };
        let got = b.template_revisions("shop", 1).await.expect("list");
        assert_eq!(
            got.first().map(|r| (r.revision, r.content.as_str())),
            Some((next, winner)),
            "round {round}: the stored revision is the winner's"
        );
    }
}

/// What one instance deletes is gone for the other at once: a session, a user (with their
/// sessions), an API token; and what one creates the other finds.
pub async fn sessions_are_shared(a: &dyn AccountStore, b: &dyn AccountStore) {
    a.put_user("alice", HASH, &strings(&["ops"]), false, t(0))
        .await
        .expect("alice on a");
    a.create_session("s1", "alice", "c1", t(0))
        .await
        .expect("s1 on a");
    assert!(
        b.session("s1", LIMITS, t(1))
            .await
            .expect("s1 on b")
            .is_some(),
        "a session created on a is not found on b"
    );
    assert!(b.delete_session("s1").await.expect("deleting s1 on b"));
    assert!(
        a.session("s1", LIMITS, t(2))
            .await
            .expect("s1 on a")
            .is_none(),
        "a session deleted on b lives on a"
    );
    // last use on one instance counts on the other
    a.create_session("s2", "alice", "c2", t(0))
        .await
        .expect("s2");
    b.session("s2", LIMITS, t(500))
        .await
        .expect("s2")
        .expect("s2 on b");
    assert!(
        a.session("s2", LIMITS, t(1000))
            .await
            .expect("s2")
            .is_some(),
        "a use on b did not count on a"
    );
    b.set_user_groups("alice", &strings(&["admins"]))
        .await
        .expect("regroup on b");
    assert_eq!(
        a.session("s2", LIMITS, t(1001))
            .await
            .expect("s2")
            .expect("s2")
            .groups,
        ["admins"],
        "a group change on b is not seen on a"
    );
    a.create_api_token("t1", "ht1", "alice", "ci", t(0), None)
        .await
        .expect("token on a");
    assert!(
        b.api_token_user("ht1", t(1))
            .await
            .expect("t1 on b")
            .is_some(),
        "a token created on a does not work on b"
    );
    assert!(b.delete_api_token("t1").await.expect("revoking on b"));
    assert!(
        a.api_token_user("ht1", t(2))
            .await
            .expect("t1 on a")
            .is_none(),
        "a token revoked on b works on a"
    );
    assert!(b.delete_user("alice").await.expect("deleting alice on b"));
    assert!(
        a.session("s2", LIMITS, t(1002))
            .await
            .expect("s2")
            .is_none(),
        "the session of a user deleted on b lives on a"
    );
    let e = AuditEntry::new("alice", None, "login", "", "");
    let s1 = a.append_audit(&e).await.expect("audit on a");
    let s2 = b.append_audit(&e).await.expect("audit on b");
    assert!(s2 > s1, "audit seq across instances: {s2} after {s1}");
    assert_eq!(
        b.audit_log(None, None, 10).await.expect("log on b").len(),
        2,
        "one audit log for both"
    );
}

/// Two instances create API tokens for one user at the same moment, `rounds` times: both are
/// stored (neither fails because the other was writing).
pub async fn token_creation_race(a: &dyn AccountStore, b: &dyn AccountStore, rounds: usize) {
    a.put_user("alice", HASH, &[], false, t(0))
        .await
        .expect("alice");
    for round in 0..rounds {
        let (ia, ib) = (format!("a{round}"), format!("b{round}"));
        let (ha, hb) = (format!("hash-a{round}"), format!("hash-b{round}"));
        let (ra, rb) = tokio::join!(
            a.create_api_token(&ia, &ha, "alice", "ci", t(1), None),
            b.create_api_token(&ib, &hb, "alice", "ci", t(1), None),
        );
        if let Err(e) = ra.as_ref().and(rb.as_ref()) {
            panic!("round {round}: two instances creating tokens at once: {e:?}");
        }
    }
    assert_eq!(
        b.api_tokens(Some("alice")).await.expect("listing").len(),
        2 * rounds,
        "every token created"
    );
}
