//! The gist store against the emulator: rate limits obeyed, 304s counted, permission
//! errors told apart, secrets never shown, budgets enforced, oversized and truncated
//! files reported.

use crate::support::{self, NO_SCOPE, READ_ONLY, TOKEN};
use lock_core::{Error, LeaderElectionRecord, LeaseStore, LockName};
use lock_gist::{GistStore, budget, file_name};
use serde_json::Value;
use std::time::Duration;

fn lock() -> LockName {
    LockName::new("billing/nightly").expect("valid")
}

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord::new(holder, 60, chrono::Utc::now())
}

async fn setup() -> (std::sync::Arc<lock_gist::emulator::Emulator>, String) {
    let emulator = support::emulator().await;
    let gist = emulator.control().create_gist("highlander", &[("README.md", "leases")]);
    (emulator, gist)
}

#[tokio::test]
async fn standby_polls_of_an_unchanged_gist_are_304s_that_cost_nothing() {
    let (emulator, gist) = setup().await;
    let store = support::store(&emulator, &gist, TOKEN).expect("store");
    store.create(&lock(), &record("stalin")).await.expect("create");
    let before = emulator.control().counts();
    for _ in 0..10 {
        assert_eq!(store.get(&lock()).await.expect("get").expect("present").record.holder_identity, "stalin");
    }
    let after = emulator.control().counts();
    assert_eq!(after.not_modified - before.not_modified, 10, "every poll of an unchanged gist is a 304: {after:?}");
    assert_eq!(after.get, before.get, "no full GET was needed");
    // A change is seen at the next poll.
    let other = support::store(&emulator, &gist, TOKEN).expect("store");
    let seen = other.get(&lock()).await.expect("get").expect("present");
    other.update(&lock(), &seen.version, &record("napoleon")).await.expect("update");
    assert_eq!(store.get(&lock()).await.expect("get").expect("present").record.holder_identity, "napoleon");
}

#[tokio::test]
async fn retry_after_is_obeyed_without_spending_requests() {
    let (emulator, gist) = setup().await;
    let store = support::store(&emulator, &gist, TOKEN).expect("store");
    emulator.control().set_secondary_limit(true, Some(30));
    let err = store.create(&lock(), &record("stalin")).await.expect_err("limited");
    assert!(matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(30)), "{err:?}");
    let before = emulator.control().counts();
    let again = store.get(&lock()).await.expect_err("held back");
    assert!(
        matches!(again, Error::RateLimited { retry_after: Some(d), .. } if d <= Duration::from_secs(30) && d > Duration::from_secs(25)),
        "{again:?}"
    );
    assert_eq!(emulator.control().counts(), before, "no request reached GitHub while it asked us to wait");
}

#[tokio::test]
async fn secondary_limit_without_retry_after_waits_at_least_a_minute() {
    let (emulator, gist) = setup().await;
    let store = support::store(&emulator, &gist, TOKEN).expect("store");
    emulator.control().set_secondary_limit(true, None);
    let err = store.create(&lock(), &record("stalin")).await.expect_err("limited");
    assert!(matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(60)), "{err:?}");
}

#[tokio::test]
async fn exhausted_primary_limit_waits_until_the_reset() {
    let (emulator, gist) = setup().await;
    let store = support::store(&emulator, &gist, TOKEN).expect("store");
    emulator.control().set_remaining(TOKEN, 0);
    let err = store.get(&lock()).await.expect_err("limited");
    match err {
        Error::RateLimited { retry_after: Some(d), .. } => {
            assert!(d > Duration::from_secs(3000) && d <= Duration::from_secs(3600), "{d:?}")
        }
        other => panic!("expected a wait until x-ratelimit-reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_permission_403_is_a_permission_error_not_a_rate_limit() {
    let (emulator, gist) = setup().await;
    let store = support::store(&emulator, &gist, READ_ONLY).expect("store");
    let err = store.create(&lock(), &record("stalin")).await.expect_err("read-only token");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("Gists: write"), "{err}");
    // And it does not hold later calls back.
    assert!(store.get(&lock()).await.is_ok());
}

#[tokio::test]
async fn bad_tokens_wrong_gists_and_missing_scopes_say_what_to_check() {
    let (emulator, gist) = setup().await;
    let err = support::store(&emulator, &gist, "ghp_wrong-secret-value").expect("store").get(&lock()).await.expect_err("401");
    assert!(matches!(err, Error::PermissionDenied { .. }) && err.to_string().contains("check the token"), "{err}");
    let err = support::store(&emulator, "0123456789abcdef", TOKEN).expect("store").get(&lock()).await.expect_err("404");
    assert!(matches!(err, Error::Config(_)) && err.to_string().contains("check the gist id"), "{err}");
    let err = support::store(&emulator, &gist, NO_SCOPE).expect("store").create(&lock(), &record("stalin")).await.expect_err("no scope");
    assert!(err.to_string().contains("gist scope"), "{err}");
}

#[tokio::test]
async fn the_token_never_appears_in_errors_debug_or_display() {
    let (emulator, gist) = setup().await;
    let secret = "ghp_wrong-secret-value";
    let store = support::store(&emulator, &gist, secret).expect("store");
    let err = store.get(&lock()).await.expect_err("401");
    let builder = GistStore::builder(&gist).token(secret);
    let closed = GistStore::builder(&gist).api("http://127.0.0.1:1").token(secret).allow_over_budget(true).build().expect("store");
    let unreachable = closed.get(&lock()).await.expect_err("nothing listens on port 1");
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        store.to_string(),
        format!("{store:?}"),
        format!("{builder:?}"),
        unreachable.to_string(),
        format!("{unreachable:?}"),
    ] {
        assert!(!shown.contains(secret), "the token leaked: {shown}");
    }
    assert!(unreachable.is_transient(), "{unreachable:?}");
}

#[test]
fn the_write_budget_is_checked_against_githubs_secondary_limit() {
    let err = GistStore::builder("abc123").token("t").build().expect_err("client-go's 2 s retry is 1800 writes an hour");
    let text = err.to_string();
    assert!(text.contains("1800") && text.contains("500") && text.contains("7.2s"), "{text}");
    assert!(GistStore::builder("abc123").token("t").retry_period(Duration::from_secs(10)).build().is_ok(), "360 an hour is fine");
    assert!(GistStore::builder("abc123").token("t").retry_period(Duration::from_secs(8)).build().is_ok(), "450 an hour warns but builds");
    assert!(GistStore::builder("abc123").token("t").allow_over_budget(true).build().is_ok());
    let b = budget(Duration::from_secs(8));
    assert!((b.writes_per_hour - 450.0).abs() < 1e-9 && (b.share - 0.9).abs() < 1e-9, "{b:?}");
    let err = GistStore::builder("not a gist id").token("t").retry_period(Duration::from_secs(10)).build().expect_err("bad id");
    assert!(err.to_string().contains("hexadecimal id"), "{err}");
}

#[tokio::test]
async fn oversized_records_truncated_files_and_foreign_content_are_clear_errors() {
    let (emulator, gist) = setup().await;
    let store = support::store(&emulator, &gist, TOKEN).expect("store");
    let mut huge = record("stalin");
    huge.extra.insert("padding".into(), Value::String("x".repeat(1024 * 1024 + 1)));
    let err = store.create(&lock(), &huge).await.expect_err("over 1 MB");
    assert!(matches!(err, Error::Config(_)) && err.to_string().contains("holds at most"), "{err}");

    let big = LockName::new("big").expect("valid");
    let control = emulator.control();
    let name = file_name(lock_gist::DEFAULT_FILE_PREFIX, &big);
    let content = format!("{{\"holderIdentity\":\"{}\"}}", "y".repeat(1024 * 1024 + 10));
    let truncated_gist = control.create_gist("highlander", &[(name.as_str(), content.as_str())]);
    let store = support::store(&emulator, &truncated_gist, TOKEN).expect("store");
    let err = store.get(&big).await.expect_err("truncated");
    assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains("truncated"), "{err}");
    assert!(store.create(&big, &record("stalin")).await.is_err());
    assert_eq!(control.file(&truncated_gist, &name).as_deref(), Some(content.as_str()), "left untouched");

    assert!(store.get(&LockName::new("absent").expect("valid")).await.expect("get").is_none(), "a missing file is an absent lock");
}

#[test]
fn distinct_lock_names_make_distinct_file_names() {
    let names = ["a/b", "a_b", "a%2Fb", "a.b", "a b", "A/B"];
    let files: std::collections::HashSet<String> =
        names.iter().map(|n| file_name("highlander-", &LockName::new(n).expect("valid"))).collect();
    assert_eq!(files.len(), names.len(), "{files:?}");
    assert_eq!(file_name("highlander-", &LockName::new("billing/nightly").expect("valid")), "highlander-billing%2Fnightly.json");
}
