//! The Postgres recipe of docs/fencing.md, with real `highlander run` processes: the
//! command writes to a database of its own, fenced by HIGHLANDER_FENCING_TOKEN; a
//! deposed term's late write is refused and changes nothing.

use std::process::Command;

const FENCE_SQL: &str = include_str!("../../../docs/fencing/postgres-fence.sql");
const WRITER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fencing/write-ledger.sh");

/// The lock store's URL without its password, and the password.
fn split(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("user-info");
    let (user, password) = userinfo.split_once(':').map_or((userinfo, ""), |(u, p)| (u, p));
    (format!("{scheme}://{user}@{host}"), password.to_string())
}

fn psql(url: &str, password: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_ledger_writes_of_a_deposed_term_are_refused() {
    let full = lock_conformance::fixtures::postgres_url().await.expect("a Postgres");
    lock_conformance::fixtures::ready(&lock_postgres::BACKEND, &full).await.expect("ready");
    let (url, password) = split(&full);
    // The command's own database objects (here on the same server, in a schema of its own).
    let schema = format!("recipe_{}", std::process::id());
    let data = format!("{url}?options=-csearch_path%3D{schema}");
    psql(&url, &password, &format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
    psql(&data, &password, FENCE_SQL);
    psql(&data, &password, "CREATE TABLE IF NOT EXISTS ledger (token bigint, writer text, at timestamptz)");
    let lock = format!("recipe-{}", std::process::id());

    // Two terms one after the other, each writing under highlander run.
    for identity in ["alpha", "beta"] {
        let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
            .args(["run", "--store", &url, "--lock", &lock, "--identity", identity, "--", WRITER])
            .env("PGPASSWORD", &password)
            .env("DATA_URL", &data)
            .env("DATA_PASSWORD", &password)
            .output()
            .expect("highlander runs");
        assert!(out.status.success(), "{identity}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows = psql(&data, &password, "SELECT token || ' ' || writer FROM ledger ORDER BY token");
    let rows: Vec<(u64, &str)> =
        rows.lines().map(|l| l.split_once(' ').map(|(t, w)| (t.parse().expect("a token"), w)).expect("token writer")).collect();
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), ["alpha", "beta"], "each term wrote once, in order: {rows:?}");
    let (alpha, beta) = (rows[0].0, rows[1].0);
    assert!(alpha < beta, "beta's term has the larger token: {rows:?}");

    // Term 1 wakes up late and writes again: refused, exit 3, nothing written.
    let late = Command::new(WRITER)
        .env("DATA_URL", &data)
        .env("DATA_PASSWORD", &password)
        .env("HIGHLANDER_FENCING_TOKEN", alpha.to_string())
        .env("HIGHLANDER_IDENTITY", "alpha")
        .output()
        .expect("the writer runs");
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert_eq!(late.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("fenced: token {alpha} is older than the last writer's of ledger")), "{stderr}");
    assert_eq!(psql(&data, &password, "SELECT count(*) FROM ledger"), "2", "the late write changed nothing");
    assert_eq!(psql(&data, &password, "SELECT token FROM fence WHERE resource = 'ledger'"), beta.to_string());
    // The mutation check: the same late insert without the fence lands.
    psql(&data, &password, &format!("INSERT INTO ledger VALUES ({alpha}, 'alpha-unfenced', now())"));
    assert_eq!(psql(&data, &password, "SELECT count(*) FROM ledger"), "3");
    psql(&url, &password, &format!("DROP SCHEMA {schema} CASCADE"));
}
