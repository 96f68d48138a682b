//! `highlander demo`: the demo script of [`highlander::demo`], on a GitHub gist API
//! emulator started in-process (the default) or on any store URL.

use highlander::{OpenOptions, demo::Script, open_with};
#[cfg(feature = "gist")]
use lock_gist::emulator::{Emulator, EmulatorConfig};
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The store (default: a GitHub gist API emulator started in-process).
    #[arg(long)]
    store: Option<String>,
    /// Comma-separated candidate identities (all different).
    #[arg(long, default_value = "napoleon,cleopatra,stalin", value_delimiter = ',')]
    candidates: Vec<String>,
    /// The electors' durations (the demo's defaults: lease 6s, renew deadline 4s, retry period 1s).
    #[command(flatten)]
    timing: crate::TimingArgs,
    /// How long the first leader leads before it crashes.
    #[arg(long = "crash-after", default_value = "10s", value_parser = crate::duration)]
    crash_after: Duration,
    /// The lock's name.
    #[arg(long, default_value = "world-domination")]
    lock: String,
}

/// The token the default emulator accepts.
#[cfg(feature = "gist")]
const EMULATOR_TOKEN: &str = "emulator-token";

pub(crate) async fn demo(args: Args) -> Result<(), String> {
    let timing = args.timing.with_defaults(Script::default().timing)?;
    let script = Script { candidates: args.candidates, timing, crash_after: args.crash_after, lock: args.lock };
    let options = OpenOptions::new(timing);
    match args.store {
        Some(url) => {
            let label = if url.starts_with("memory://") {
                "memory:// (in-process: the candidates share it because they share this process)".to_string()
            } else {
                "the given store".to_string()
            };
            announce(&label, &script);
            highlander::demo::run(&script, || open_with(&url, &options)).await.map(drop)
        }
        None => on_the_emulator(&script, &options).await,
    }
}

/// The demo on a GitHub gist API emulator started in this process.
#[cfg(feature = "gist")]
async fn on_the_emulator(script: &Script, options: &OpenOptions) -> Result<(), String> {
    let emulator =
        Emulator::start(EmulatorConfig::default()).await.map_err(|e| format!("cannot start the gist emulator on 127.0.0.1: {e}"))?;
    let gist = emulator.control().create_gist("highlander", &[("README.md", "Highlander demo leases")]);
    announce(&format!("a GitHub gist API emulator at {} (gist {gist})", emulator.url()), script);
    let connect = || {
        // The emulator is not GitHub: its write budget does not apply.
        let store = lock_gist::GistStore::builder(&gist)
            .api(emulator.url())
            .token(EMULATOR_TOKEN)
            .options(options)
            .allow_over_budget(true)
            .build()
            .map(|s| std::sync::Arc::new(s) as highlander::SharedStore);
        std::future::ready(store)
    };
    highlander::demo::run(script, connect).await.map(drop)
}

/// Without the gist backend there is no emulator to start.
#[cfg(not(feature = "gist"))]
async fn on_the_emulator(_: &Script, _: &OpenOptions) -> Result<(), String> {
    Err("this highlander was built without the gist feature, whose API emulator is the demo's default store: give --store URL (memory://demo runs it in this process)".into())
}

fn announce(label: &str, script: &Script) {
    let t = script.timing;
    println!("store: {label}; lease {:?}, renew deadline {:?}, retry period {:?}", t.lease, t.renew_deadline, t.retry_period);
}
