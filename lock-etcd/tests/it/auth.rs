//! etcd with authentication: a user whose role may read and write the lease prefix
//! runs an election; a wrong password or a role without the prefix is a clear
//! permission error; the password never shows.

use etcd_client::{Client, Permission};
use lock_conformance::fixtures::{self, RunningContainer};
use lock_core::{Error, LeaderElectionRecord, LeaseStore, LockName};
use lock_etcd::{DEFAULT_PREFIX, EtcdStore};
use std::{sync::Arc, time::Duration};

const PASSWORD: &str = "s3cret-lease-password";

/// Creates root, a `highlander` user with readwrite on the lease prefix, an `outsider`
/// with a role on another prefix, and enables auth, in a container of this test's own:
/// auth is server-wide, and the tests running beside it share the process's etcd.
/// Returns the endpoints and the container (removed once dropped).
async fn cluster_with_auth() -> (Vec<String>, Arc<RunningContainer>) {
    let (_, container) = fixtures::etcd_restartable().await.unwrap_or_else(|e| panic!("no etcd container: {e}"));
    let endpoints = vec![format!("http://127.0.0.1:{}", container.host_port())];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut admin = loop {
        if let Ok(mut c) = Client::connect(&endpoints, None).await
            && c.get("probe", None).await.is_ok()
        {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "etcd at {endpoints:?} never became ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    admin.role_add("root").await.expect("root role");
    admin.user_add("root", "root-password", None).await.expect("root user");
    admin.user_grant_role("root", "root").await.expect("root grant");
    admin.role_add("highlander").await.expect("role");
    admin.role_grant_permission("highlander", Permission::read_write(DEFAULT_PREFIX).with_prefix()).await.expect("grant prefix");
    admin.user_add("highlander", PASSWORD, None).await.expect("user");
    admin.user_grant_role("highlander", "highlander").await.expect("grant role");
    admin.role_add("elsewhere").await.expect("role");
    admin.role_grant_permission("elsewhere", Permission::read_write("other/").with_prefix()).await.expect("grant other");
    admin.user_add("outsider", PASSWORD, None).await.expect("user");
    admin.user_grant_role("outsider", "elsewhere").await.expect("grant role");
    admin.auth_enable().await.expect("auth on");
    (endpoints, container)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_users_lead_and_everyone_else_is_told_why_not() {
    let (endpoints, _container) = cluster_with_auth().await;
    let lock = LockName::new("auth/lock").expect("valid");
    let rec = LeaderElectionRecord::new("stalin", 15, chrono::Utc::now());

    let store = EtcdStore::builder(&endpoints).user("highlander", PASSWORD).build().expect("valid");
    let v1 = store.create(&lock, &rec).await.expect("create with the README's role");
    store.update(&lock, &v1, &rec).await.expect("update with the README's role");
    assert!(store.get(&lock).await.expect("get").is_some());

    let anonymous = EtcdStore::builder(&endpoints).build().expect("valid");
    let err = anonymous.get(&lock).await.expect_err("auth is on");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");

    let wrong = EtcdStore::builder(&endpoints).user("highlander", "not-the-password").build().expect("valid");
    let err = wrong.get(&lock).await.expect_err("wrong password");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{store:?}"), store.to_string()] {
        assert!(!shown.contains(PASSWORD) && !shown.contains("not-the-password"), "a password leaked: {shown}");
    }

    let outsider = EtcdStore::builder(&endpoints).user("outsider", PASSWORD).build().expect("valid");
    let err = outsider.get(&lock).await.expect_err("no permission on the prefix");
    assert!(matches!(err, Error::PermissionDenied { .. }) && err.to_string().contains("permission"), "{err}");
}
