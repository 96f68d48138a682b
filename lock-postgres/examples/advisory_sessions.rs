//! How long a Postgres server keeps a session-level advisory lock after its holder is
//! gone: closed (as when its process dies), or cut off by a partition with the server's
//! default settings, with TCP keepalives, and with `idle_session_timeout`. Prints a
//! Markdown table for docs/semantics.md and fails if the server does not behave as the
//! report says.
//!
//! `LOCK_TEST_POSTGRES_URL=postgres://SUPERUSER@127.0.0.1:PORT/DB cargo run -p lock-postgres --example advisory_sessions`
//!
//! Runs as root: a partition is two iptables rules that drop one connection's packets on
//! loopback (that connection's ports only), removed afterwards.

use lock_core::{LeaderElectionRecord, LeaseStore, LockName, StoreUrl};
use lock_postgres::PostgresStore;
use std::time::{Duration, Instant};

type Failure = Box<dyn std::error::Error>;

/// How long a cut session is watched before it counts as kept.
const PATIENCE: Duration = Duration::from_secs(20);

struct Case {
    name: &'static str,
    role: &'static str,
    settings: &'static [(&'static str, &'static str)],
    cut: bool,
    /// Whether the server must have ended the session within `PATIENCE`.
    ends: bool,
}

const CASES: &[Case] = &[
    Case { name: "closed (its process ended)", role: "highlander_adv_plain", settings: &[], cut: false, ends: true },
    Case { name: "cut off, server defaults", role: "highlander_adv_plain", settings: &[], cut: true, ends: false },
    Case {
        name: "cut off, tcp_keepalives_idle=2, _interval=1, _count=2",
        role: "highlander_adv_keepalive",
        settings: &[("tcp_keepalives_idle", "2"), ("tcp_keepalives_interval", "1"), ("tcp_keepalives_count", "2")],
        cut: true,
        ends: true,
    },
    Case {
        name: "cut off, idle_session_timeout=3s",
        role: "highlander_adv_idle",
        settings: &[("idle_session_timeout", "'3s'")],
        cut: true,
        ends: true,
    },
];

/// Drops one loopback connection's packets both ways while it lives, as they arrive
/// (dropped as they leave, the sender's kernel sees its send fail and keeps retrying
/// its keepalive probes instead of counting them unanswered).
struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    fn cut(client_port: u16, server_port: u16) -> Result<Self, Failure> {
        let rule = |from: u16, to: u16| {
            let (from, to) = (from.to_string(), to.to_string());
            [
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                "--sport",
                &from,
                "--dport",
                &to,
                "-m",
                "comment",
                "--comment",
                "highlander-advisory-sessions",
                "-j",
                "DROP",
            ]
            .map(str::to_string)
            .to_vec()
        };
        let partition = Self { rules: vec![rule(client_port, server_port), rule(server_port, client_port)] };
        for r in &partition.rules {
            let status = std::process::Command::new("iptables").arg("-I").args(r).status()?;
            if !status.success() {
                return Err(format!("iptables -I {} failed (root is needed)", r.join(" ")).into());
            }
        }
        Ok(partition)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for r in &self.rules {
            let _ = std::process::Command::new("iptables").arg("-D").args(r).status();
        }
    }
}

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord::new(holder, 3600, chrono::Utc::now())
}

/// `url` with another user and `advisory=true`.
fn as_role(url: &StoreUrl, role: &str) -> String {
    let host = url.hosts().join(",");
    let password = url.password().map(|p| format!(":{p}")).unwrap_or_default();
    format!("postgres://{role}{password}@{host}/{}?advisory=true", url.path())
}

async fn run(admin: &PostgresStore, url: &StoreUrl, server_port: u16, case: &Case, n: usize) -> Result<Option<Duration>, Failure> {
    let client = admin.connection().await?;
    let lock = LockName::new(format!("advisory-sessions-{}-{n}", std::process::id()))?;
    let holder = PostgresStore::builder(&as_role(url, case.role))?.build()?;
    holder.create(&lock, &record("a")).await?;
    let held = "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                WHERE l.locktype = 'advisory' AND l.granted AND a.usename = $1 AND a.application_name = 'highlander-advisory'";
    let ports = client.query(held, &[&case.role]).await?;
    let [row] = ports.as_slice() else { return Err(format!("{}: expected one advisory session, saw {}", case.name, ports.len()).into()) };
    let client_port = u16::try_from(row.get::<_, i32>(0))?;
    if case.cut {
        // The client's delayed acknowledgement of the server's last answer goes out first:
        // cut before it, the server retransmits that answer (bounded by tcp_user_timeout
        // and tcp_retries2) and never starts its keepalive probes.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let partition = if case.cut { Some(Partition::cut(client_port, server_port)?) } else { None };
    let started = Instant::now();
    if !case.cut {
        drop(holder);
    }
    let ended = loop {
        if client.query(held, &[&case.role]).await?.is_empty() {
            break Some(started.elapsed());
        }
        if started.elapsed() > PATIENCE {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(partition);
    if !case.ends && ended.is_none() {
        // The kept session is ended here, so that the next case starts clean.
        client.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", &[&case.role]).await?;
    }
    Ok(ended)
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let url = std::env::var("LOCK_TEST_POSTGRES_URL").map_err(|_| "set LOCK_TEST_POSTGRES_URL to a superuser's URL")?;
    let parsed = StoreUrl::parse(&url)?;
    // The cut drops packets on the loopback interface, IPv4: the server must be there.
    if !parsed.hosts().iter().all(|h| h.starts_with("127.0.0.1")) {
        return Err("LOCK_TEST_POSTGRES_URL must name a server on 127.0.0.1 (the cut is an iptables rule on lo)".into());
    }
    let server_port = parsed.hosts().first().and_then(|h| h.rsplit_once(':')).and_then(|(_, p)| p.parse().ok()).unwrap_or(5432);
    let admin = PostgresStore::builder(&url)?.build()?;
    admin.ensure_schema().await?;
    let client = admin.connection().await?;
    for case in CASES {
        let password = parsed.password().map(|p| format!(" PASSWORD '{}'", p.replace('\'', "''"))).unwrap_or_default();
        client
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
                 ALTER ROLE {role} LOGIN{password}; GRANT SELECT, INSERT, UPDATE ON highlander_leases TO {role}",
                role = case.role
            ))
            .await?;
        for (name, value) in case.settings {
            client.batch_execute(&format!("ALTER ROLE {} SET {name} = {value}", case.role)).await?;
        }
    }
    let keepalive_time = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time").unwrap_or_default();
    println!("| the advisory lock's holder | the server ended its session after |");
    println!("|---|---|");
    let mut wrong = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let ended = run(&admin, &parsed, server_port, case, n).await?;
        let shown = match ended {
            Some(d) => format!("{:.2} s", d.as_secs_f64()),
            None => format!("kept > {} s (the kernel's keepalive starts after {} s)", PATIENCE.as_secs(), keepalive_time.trim()),
        };
        println!("| {} | {shown} |", case.name);
        if ended.is_some() != case.ends {
            wrong.push(case.name);
        }
    }
    if !wrong.is_empty() {
        return Err(format!("the server did not behave as docs/semantics.md says for: {}", wrong.join("; ")).into());
    }
    Ok(())
}
