//! Postgres servers run by the tests themselves: Debian's binaries as plain processes on
//! 127.0.0.1, as the `postgres` user when the tests run as root, stopped by their pid.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Runs a program as the `postgres` user when we are root (Postgres refuses root),
/// directly, so the pid we hold is the program's own.
pub(crate) fn as_postgres(program: &Path) -> Command {
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

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub(crate) fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The newest installed server's binaries.
pub(crate) fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("Postgres server binaries under /usr/lib/postgresql (apt-get install postgresql; scripts/setup does)")
}

/// Gives the postgres user what it must own.
pub(crate) fn chown(path: &Path) {
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres"]).arg(path), "chown");
    }
}

/// A Postgres server stopped by its pid when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) data: PathBuf,
}

impl Server {
    /// Starts `postgres` on `data` (listening on 127.0.0.1 only, its socket in `dir`) with `settings`.
    pub(crate) fn start(dir: &Path, data: &Path, settings: &[&str]) -> Self {
        let port = lock_conformance::fixtures::free_loopback_port().expect("a free port on 127.0.0.1");
        let mut cmd = as_postgres(&pg_bin().join("postgres"));
        cmd.arg("-D").arg(data).args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string(), "-k"]).arg(dir);
        for s in settings {
            cmd.args(["-c", s]);
        }
        let log = data.with_extension("log");
        let child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).expect("log")).spawn().expect("postgres starts");
        let server = Self { child, port, data: data.to_path_buf() };
        // Listening is not accepting: until recovery ends, connections get "the database
        // system is starting up" (a TLS test once failed so). pg_isready says when it accepts.
        let until = Instant::now() + Duration::from_secs(30);
        let ready = || {
            Command::new(pg_bin().join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                .status()
                .is_ok_and(|s| s.success())
        };
        while !ready() {
            assert!(Instant::now() < until, "postgres did not accept connections: {}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// SIGKILL of the server and every process it started: a crash, nothing flushed or sent.
    pub(crate) fn crash(mut self) {
        let pid = self.child.id();
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid.to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGINT: Postgres's fast shutdown.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).stderr(Stdio::null()).status();
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

/// A directory removed when dropped (after the servers that use it, declared later).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("highlander-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        chown(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
