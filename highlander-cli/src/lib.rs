//! The `highlander` command-line tool, as a library: its `main` for a binary of your
//! own that adds a store of your own to the backends compiled in.
//!
//! - `highlander demo`: candidates elect a leader on a store (by default a GitHub gist
//!   API emulator started in-process), the leader crashes, a standby takes over.
//! - `highlander run --store URL --lock NAME -- CMD…`: runs a command only while this
//!   process leads.
//! - `highlander status`, `highlander reset`: a lock's record and candidates, and
//!   releasing it by hand.
//! - `highlander handover --store URL --lock NAME [--to ID]`: the leader hands over now.
//! - `highlander elect --store URL --lock NAME --serve ADDR`: campaigns with no command
//!   and serves who leads over HTTP, for a service in any language.
//! - `highlander conformance --store URL`: the shared suite against a running store.
//! - `highlander chaos --store URL`: real candidates under real faults, and an oracle.
//!
//! ```no_run
//! // src/main.rs of a crate that depends on highlander-cli and on its own store's crate.
//! # mod lock_sqlite { pub static BACKEND: highlander::MemoryBackend = highlander::MemoryBackend; }
//! fn main() -> std::process::ExitCode {
//!     highlander_cli::main_with(&[&lock_sqlite::BACKEND])
//! }
//! ```
//!
//! Every subcommand then takes the store's URLs, and `--store`'s help lists its schemes.

mod chaos;
mod conformance;
mod demo;
mod elect;
mod guard;
mod handover;
mod reset;
mod run;
mod serve;
mod status;
mod tree;

use clap::{Parser, Subcommand, ValueEnum};
use highlander::Timing;
use std::{io::IsTerminal, process::ExitCode, time::Duration};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "highlander",
    version,
    about = "There can be only one: leader election across clusters, on any store with compare-and-set"
)]
struct Cli {
    /// How logs are written to stderr (filter them with RUST_LOG).
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Candidates elect a leader, it crashes without releasing, a standby takes over.
    Demo(demo::Args),
    /// Runs a command only while this process leads the lock.
    ///
    /// The command gets HIGHLANDER_LOCK, HIGHLANDER_IDENTITY and HIGHLANDER_FENCING_TOKEN,
    /// and not the store's secrets (unless --pass-store-secrets). A guard process holds
    /// each term's deadline (the start of the last successful renewal + the renew
    /// deadline) and stops the command when it passes, even if highlander itself is
    /// paused. When leadership is lost the command gets SIGTERM, then SIGKILL after the
    /// grace period, and highlander campaigns again (or exits, with --once). On SIGTERM,
    /// SIGINT or SIGHUP highlander stops the command the same way and releases the
    /// lease. When the command exits by itself the lease is released and highlander
    /// exits with the command's status (128 + signal if it was killed, 127 if it could
    /// not be started).
    Run(run::Args),
    /// Campaigns with no command and serves who leads over HTTP (a sidecar for a
    /// service in any language): GET /leader, GET /watch (long poll), /healthz,
    /// /metrics. On SIGTERM, SIGINT or SIGHUP it releases the lease and exits.
    Elect(elect::Args),
    /// Shows a lock's record: holder, times, lease, expiry, transitions, fencing token.
    Status(status::Args),
    /// Releases a lock by hand: compare-and-set on the version `status` showed, and only
    /// once its holder's lease has expired unless --force.
    Reset(reset::Args),
    /// Asks the lock's leader to hand over now, to --to or to the best live standby:
    /// it stops its command as on SIGTERM and releases, and that candidate takes over.
    /// Refused if no one leads or the candidate is not live in the lock's roster.
    Handover(handover::Args),
    /// Runs the shared conformance suite against a running store and prints its semantics.
    Conformance(conformance::Args),
    /// Real `highlander run` candidates on one lock under real faults (kill, pause,
    /// freeze, partition, outage, release), and an oracle that counts overlapping
    /// commands and fencing-token regressions from what the commands recorded. Exits
    /// non-zero on any overlap or regression.
    Chaos(chaos::Args),
}

#[cfg(test)]
mod features {
    /// The command's backend features are the facade's, each turning the facade's on,
    /// all on by default.
    #[test]
    fn the_commands_features_are_the_facades() {
        let manifest = include_str!("../Cargo.toml");
        let section = manifest.split_once("[features]\n").and_then(|(_, rest)| rest.split("\n[").next()).expect("a [features] section");
        let mut declared = Vec::new();
        let mut default = Vec::new();
        for line in section.lines().filter(|l| !l.trim().is_empty()) {
            let (name, value) = line.split_once(" = ").expect("name = [...]");
            let list: Vec<&str> = value.trim_matches(['[', ']']).split(", ").map(|v| v.trim_matches('"')).collect();
            if name == "default" {
                default = list;
            } else {
                assert!(list.contains(&format!("highlander/{name}").as_str()), "feature {name} turns on highlander/{name}: {line}");
                declared.push(name);
            }
        }
        assert_eq!(declared, highlander::FEATURES, "highlander-cli's features");
        assert_eq!(default, highlander::FEATURES, "highlander-cli's default features");
    }
}

/// A store URL as shown before the store is opened: the scheme and the hosts or name,
/// never user-info nor parameters.
pub(crate) fn store_name(url: &str) -> String {
    highlander::redact_userinfo(url.split('?').next().unwrap_or(url))
}

/// The `--store` help: the schemes compiled in, and `extra`.
pub(crate) fn store_help(extra: &str) -> String {
    format!(
        "The store URL ({}). {extra}Also read from HIGHLANDER_STORE, which keeps it out of the process's argv.",
        highlander::schemes().join(", ")
    )
}

/// The store and the lock a command works on.
#[derive(clap::Args)]
pub(crate) struct Target {
    // The store URL; its help lists the schemes compiled in.
    #[arg(long, env = "HIGHLANDER_STORE", hide_env_values = true, help = store_help(""))]
    store: String,
    /// The lock's name.
    #[arg(long)]
    lock: String,
}

/// A candidate's registration in the lock's roster, on unless --no-register.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct CandidacyArgs {
    /// This candidate's priority: a leader hands over to a live candidate of higher
    /// priority once it has been registered without a gap for --hold-down (a home
    /// region: give its candidates a higher one).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// How long a higher-priority candidate must have been registered without a gap
    /// before the leader hands over to it (default: two leases; at least one).
    #[arg(long = "hold-down", value_parser = duration)]
    hold_down: Option<Duration>,
    /// Do not register in the lock's roster: `status` does not list this candidate,
    /// hand-overs cannot name it, priorities do not apply. Saves one read and one write
    /// of the roster per lease.
    #[arg(long = "no-register", conflicts_with = "hold_down")]
    no_register: bool,
}

impl CandidacyArgs {
    /// The elector's builder with this registration.
    pub(crate) fn apply(self, builder: highlander::ElectorBuilder) -> highlander::ElectorBuilder {
        match (self.no_register, self.hold_down) {
            (true, _) => builder,
            (false, None) => builder.register(self.priority),
            (false, Some(hold_down)) => builder.register(self.priority).hold_down(hold_down),
        }
    }
}

/// The elector's durations; lock-core's defaults (client-go's) for any not given.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct TimingArgs {
    /// Lease duration, whole seconds (default: client-go's, 15s).
    #[arg(long, value_parser = duration)]
    lease: Option<Duration>,
    /// How long the leader keeps trying to renew before it steps down (default 10s).
    #[arg(long = "renew-deadline", value_parser = duration)]
    renew_deadline: Option<Duration>,
    /// How often to try to acquire or renew (default 2s).
    #[arg(long = "retry-period", value_parser = duration)]
    retry_period: Option<Duration>,
}

impl TimingArgs {
    /// The durations given, the defaults for the rest, checked by lock-core's rules.
    pub(crate) fn timing(self) -> Result<Timing, String> {
        Self::with_defaults(self, Timing::DEFAULT)
    }

    /// As [`timing`](Self::timing), with other defaults (the demo's, the suite's).
    pub(crate) fn with_defaults(self, defaults: Timing) -> Result<Timing, String> {
        let t = Timing {
            lease: self.lease.unwrap_or(defaults.lease),
            renew_deadline: self.renew_deadline.unwrap_or(defaults.renew_deadline),
            retry_period: self.retry_period.unwrap_or(defaults.retry_period),
        };
        t.check()?;
        Ok(t)
    }
}

/// Parses `15s`, `1500ms`, `2m` for clap.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    highlander::parse_duration(text)
}

/// The `highlander` command with only the backends compiled in.
#[must_use]
pub fn main() -> ExitCode {
    main_with(&[])
}

/// The `highlander` command with `backends` added to those compiled in (see
/// [`highlander::install_backends`]): every subcommand, the guard and chaos's candidates
/// (this same executable, run again) know their schemes.
#[must_use]
pub fn main_with(backends: &[&'static dyn highlander::Backend]) -> ExitCode {
    if let Err(e) = highlander::install_backends(backends) {
        return fail(false, &e.to_string(), 2);
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == guard::ARG) {
        return guard::main();
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == guard::EXEC_ARG) {
        return guard::exec_main();
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == chaos::recorder::ARG) {
        return chaos::recorder::main();
    }
    let json = std::env::args_os().any(|a| a == "--log-format=json")
        || std::env::args_os().collect::<Vec<_>>().windows(2).any(|w| w[0] == "--log-format" && w[1] == "json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            // One clear line, not clap's usage block: its message and what it lists
            // (the missing arguments), up to the usage.
            let text = e.to_string();
            let message: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:")).map(str::trim).collect();
            return fail(json, message.join(" ").trim_start_matches("error: "), 2);
        }
    };
    // The demo narrates on stdout; `run` reports what it does on stderr; the suite
    // injects faults on purpose, and the electors' warnings about them are noise.
    let default_filter = match cli.command {
        // Highlander's own crates (lock_core, lock_postgres, …) say what they do; the
        // drivers under them would repeat a store outage at every reconnect, and the
        // elector already says it once, naming the lock.
        Command::Run(_) | Command::Elect(_) => "error,highlander=info,lock_=info",
        Command::Conformance(_) | Command::Chaos(_) => "error",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    if json {
        logs.json().init();
    } else {
        logs.init();
    }

    // `run` and `status` are one elector or one look: a single thread keeps an idle
    // candidate small. The demo and the suite run many electors at once.
    let runtime = match cli.command {
        Command::Run(_) | Command::Elect(_) | Command::Status(_) | Command::Reset(_) | Command::Handover(_) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return fail(json, &format!("cannot start the async runtime: {e}"), 1),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::demo(args).await.map(|()| ExitCode::SUCCESS).map_err(Failure::from),
            Command::Run(args) => run::run(args).await,
            Command::Elect(args) => elect::elect(args).await.map(|()| ExitCode::SUCCESS),
            Command::Status(args) => status::status(args).await.map(|()| ExitCode::SUCCESS),
            Command::Reset(args) => reset::reset(args).await.map(|()| ExitCode::SUCCESS),
            Command::Handover(args) => handover::handover(args).await.map(|()| ExitCode::SUCCESS),
            Command::Conformance(args) => conformance::conformance(args).await.map_err(Failure::from),
            Command::Chaos(args) => chaos::chaos(args).await,
        }
    });
    // Blocked name lookups and the like must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(Failure { message, code }) => fail(json, &message, code),
    }
}

/// Why a command failed, and the exit code that says so.
pub(crate) struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// The shell's code for a command that could not be started.
    pub(crate) fn not_started(message: String) -> Self {
        Self { message, code: 127 }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self { message, code: 1 }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// A fatal error always reaches stderr, in one line, whatever `RUST_LOG` filters: as a
/// JSON object in the JSON log format, else as text.
fn fail(json: bool, message: &str, code: u8) -> ExitCode {
    let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if json {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "ERROR",
            "fields": { "message": message },
            "target": "highlander",
        });
        eprintln!("{line}");
    } else {
        eprintln!("highlander: {message}");
    }
    ExitCode::from(code)
}
