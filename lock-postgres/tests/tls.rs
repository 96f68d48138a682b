//! TLS against a real Postgres server that refuses plain connections: a throwaway CA
//! (made with `openssl`) signs the server's certificate, and the server (Debian's
//! binaries, run here on 127.0.0.1 and stopped by its pid) accepts only `hostssl`.
//!
//! Needs the `postgresql` and `openssl` packages (`scripts/setup` installs them); without
//! them the test fails and says so.

use lock_core::{Error, LeaderElectionRecord, LeaseStore, LockName};
use lock_postgres::PostgresStore;
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Runs a program as the `postgres` user when we are root (Postgres refuses root),
/// directly, so the pid we hold is the server's own.
fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new(program);
    if is_root() {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user exists (apt-get install postgresql)")
        };
        c.gid(id("-g")).uid(id("-u"));
    }
    c
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("Postgres server binaries under /usr/lib/postgresql (apt-get install postgresql; scripts/setup does)")
}

/// A certificate authority and a server certificate for localhost / 127.0.0.1 it signed.
fn certificates(dir: &Path, name: &str) -> PathBuf {
    let ca = dir.join(format!("{name}-ca.pem"));
    let ca_key = dir.join(format!("{name}-ca.key"));
    run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={name}"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout"])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
        "openssl (the CA)",
    );
    ca
}

fn server_certificate(dir: &Path, ca: &Path) {
    let ca_key = ca.with_extension("key");
    let ext = dir.join("server.ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").expect("ext");
    run(
        Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout"])
            .arg(dir.join("server.key"))
            .arg("-out")
            .arg(dir.join("server.csr")),
        "openssl (the server's request)",
    );
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "1", "-in"])
            .arg(dir.join("server.csr"))
            .arg("-CA")
            .arg(ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-out"])
            .arg(dir.join("server.crt"))
            .arg("-extfile")
            .arg(&ext),
        "openssl (the server's certificate)",
    );
}

/// A Postgres server stopped by its pid when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGINT: Postgres's fast shutdown.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_server(dir: &Path) -> Server {
    let bin = pg_bin();
    let data = dir.join("data");
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres"]).arg(dir), "chown");
    }
    run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync"]), "initdb");
    // Only TLS connections are accepted: a plain one is rejected outright.
    std::fs::write(data.join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n").expect("hba");
    for f in ["server.key", "server.crt"] {
        std::fs::copy(dir.join(f), data.join(f)).expect("copy");
    }
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres"]).arg(&data), "chown");
    }
    run(Command::new("chmod").arg("600").arg(data.join("server.key")), "chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "fsync=off", "-p", &port.to_string(), "-k"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("postgres.log")).expect("log"))
        .spawn()
        .expect("postgres starts");
    let server = Server { child, port };
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "postgres did not listen: {}",
            std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[tokio::test]
async fn tls_is_verified_against_the_given_ca_and_refused_without_it() {
    let dir = TempDir::new();
    let dir = dir.0.as_path();
    let ca = certificates(dir, "highlander-test-ca");
    server_certificate(dir, &ca);
    let other_ca = certificates(dir, "some-other-ca");
    let server = start_tls_server(dir);
    let base = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let lock = LockName::new("tls").expect("name");

    // verify-full with the right CA: TLS, verified, and the store works.
    let url = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let store = PostgresStore::builder(&url).expect("url").build().expect("store");
    store.ensure_schema().await.expect("schema over TLS");
    let v = store.create(&lock, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create over TLS");
    // Change notifications come over their own TLS connection (LISTEN).
    let mut changes = store.watch(&lock).await.expect("LISTEN over TLS").expect("postgres notifies");
    let v2 = store.update(&lock, &v, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("update over TLS");
    assert_eq!(store.get(&lock).await.expect("get").expect("record").record.holder_identity, "stalin");
    let seen = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("a notification").expect("open");
    assert_eq!(seen.version, v2, "the notification carries the update's version");

    // The builder's option does the same as sslrootcert.
    let store =
        PostgresStore::builder(&format!("{base}?sslmode=require")).expect("url").root_certificates_file(&ca).build().expect("store");
    assert!(store.get(&lock).await.expect("get with root_certificates_file").is_some());

    // Default sslmode (prefer) and Mozilla's roots: the private CA is not trusted, and the
    // error says how to fix it, once, without retrying forever as if the store were down.
    let store = PostgresStore::builder(&base).expect("url").build().expect("store");
    let err = store.get(&lock).await.expect_err("an untrusted certificate");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("TLS") && text.contains("sslrootcert") && text.contains("127.0.0.1"), "{text}");

    // Another CA's certificate does not vouch for this server.
    let store = PostgresStore::builder(&format!("{base}?sslmode=verify-full&sslrootcert={}", other_ca.display()))
        .expect("url")
        .build()
        .expect("store");
    let err = store.get(&lock).await.expect_err("the wrong CA");
    assert!(matches!(err, Error::Config(_)) && err.to_string().contains("TLS"), "{err}");

    // Plain connections are refused by this server: proof the successes above were TLS.
    let store = PostgresStore::builder(&format!("{base}?sslmode=disable")).expect("url").build().expect("store");
    assert!(store.get(&lock).await.is_err(), "the server accepts TLS only");

    drop(server);
}

/// A directory removed when dropped (after the server that uses it, declared later).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("highlander-pg-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
