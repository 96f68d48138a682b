//! Napoleon, Cleopatra and Stalin contend for one lock in the in-process memory store;
//! the leader crashes without releasing and a standby takes over.
//!
//! `cargo run -p highlander --example demo` (the `highlander demo` command runs the
//! same script on a gist emulator or any store URL).

use highlander::{OpenOptions, demo};

#[tokio::main]
async fn main() -> Result<(), String> {
    let script = demo::Script { crash_after: std::time::Duration::from_secs(5), ..demo::Script::default() };
    println!(
        "store: memory:// (in-process); lease {:?}, renew deadline {:?}, retry period {:?}",
        script.timing.lease, script.timing.renew_deadline, script.timing.retry_period
    );
    let options = OpenOptions::new(script.timing);
    demo::run(&script, || highlander::open_with("memory://demo", &options)).await.map(drop)
}
