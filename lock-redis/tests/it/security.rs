//! ACL users and TLS against real Redis servers (Debian's `redis-server`, started here
//! on 127.0.0.1): the README's ACL is enough for an election, a user without it is
//! refused with a permission error that names the lock and the store, a wrong password
//! is refused, and no password ever shows; `rediss://` verifies the server against `ca=`.

use lock_conformance::fixtures::{random_secret, redis_server, test_ca, test_server_certificate};
use lock_core::{Error, LeaderElectionRecord, LeaseStore, LockName};
use lock_redis::RedisStore;
use std::time::Duration;

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord::new(holder, 15, chrono::Utc::now())
}

/// The ACL from the README, word for word.
const README_ACL: &str = "on resetkeys ~highlander/* resetchannels &highlander/ -@all +evalsha +eval +script|load +type +exists +hget +hmget +hset +hincrby +publish +subscribe +ping +wait";

async fn admin(port: u16, password: &str, command: &[&str]) {
    let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}/0")).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("admin connection");
    let mut cmd = redis::cmd(command[0]);
    for a in &command[1..] {
        cmd.arg(*a);
    }
    let () = cmd.query_async(&mut conn).await.expect("admin command");
}

#[tokio::test]
async fn readme_acl_is_enough_and_others_are_refused_without_showing_passwords() {
    let admin_password = random_secret();
    let server = redis_server("acl", &["--requirepass", &admin_password]).await.expect("redis-server");
    let (app, nobody) = (random_secret(), random_secret());
    let mut acl: Vec<String> = vec!["ACL".into(), "SETUSER".into(), "lease_app".into()];
    acl.extend(README_ACL.split(' ').map(String::from));
    acl.push(format!(">{app}"));
    admin(server.port, &admin_password, &acl.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // Every command, but only someone else's keys.
    let nobody_acl = format!(">{nobody}");
    admin(server.port, &admin_password, &["ACL", "SETUSER", "lease_nobody", "on", "resetkeys", "~other/*", "&*", "+@all", &nobody_acl])
        .await;

    let lock = LockName::new("acl/nightly").expect("lock");
    let url = |user: &str, password: &str| format!("redis://{user}:{password}@127.0.0.1:{}/0", server.port);
    let store = RedisStore::builder(&url("lease_app", &app)).expect("url").connect().await.expect("lease_app connects");
    let mut changes = store.watch(&lock).await.expect("subscribe").expect("redis notifies");
    let v1 = store.create(&lock, &record("alpha")).await.expect("create");
    let v2 = store.update(&lock, &v1, &record("beta")).await.expect("update");
    assert_eq!(store.get(&lock).await.expect("get").expect("present").version, v2);
    let heard = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("a notification").expect("open");
    assert_eq!(heard.record.holder_identity, "alpha");

    let store = RedisStore::builder(&url("lease_nobody", &nobody)).expect("url").connect().await.expect("lease_nobody connects");
    let err = store.get(&lock).await.expect_err("no access to highlander/*");
    let text = err.to_string();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(text.contains("acl/nightly") && text.contains(&format!("127.0.0.1:{}", server.port)), "{text}");
    assert!(!text.contains(&nobody), "the password leaked: {text}");

    let wrong = random_secret();
    let err = match RedisStore::builder(&url("lease_app", &wrong)).expect("url").connect().await {
        Ok(store) => store.get(&lock).await.expect_err("a wrong password"),
        Err(e) => e,
    };
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!text.contains(&wrong) && !text.contains(&app), "a password leaked: {text}");
    server.kill();
}

#[tokio::test]
async fn rediss_verifies_the_server_against_the_given_ca() {
    let dir = tempdir("tls");
    let ca = test_ca(&dir, "highlander-redis-ca").expect("CA");
    let (crt, key) = test_server_certificate(&dir, &ca).expect("certificate");
    let other = test_ca(&dir, "some-other-ca").expect("another CA");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port().to_string();
    let (crt, key, ca_s) = (crt.display().to_string(), key.display().to_string(), ca.display().to_string());
    let server = redis_server(
        "tls",
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &crt,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_s,
            "--tls-auth-clients",
            "no",
        ],
    )
    .await
    .expect("redis-server with TLS");
    let lock = LockName::new("tls/lock").expect("lock");
    let store =
        RedisStore::builder(&format!("rediss://localhost:{tls_port}/0?ca={}", ca.display())).expect("url").connect().await.expect("TLS");
    store.create(&lock, &record("alpha")).await.expect("create over TLS");
    assert!(store.get(&lock).await.expect("get").is_some());

    let err = match RedisStore::builder(&format!("rediss://localhost:{tls_port}/0?ca={}", other.display())).expect("url").connect().await {
        Ok(store) => store.get(&lock).await.expect_err("an untrusted certificate"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Unavailable { .. } | Error::Config(_) | Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains(&tls_port), "names the store: {err}");
    server.kill();
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("highlander-redis-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}
