//! Runs the GitHub gist API emulator on 127.0.0.1 until Ctrl-C.
//!
//! `cargo run -p lock-gist --bin gist-emulator -- [--port 8080] [--token TOKEN] [--gist]`
//! (`--gist` creates an empty-ish gist and prints its id).

use lock_gist::emulator::{Access, Emulator, EmulatorConfig, Token};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let port = value("--port").map(|p| p.parse::<u16>()).transpose()?.unwrap_or(0);
    let token = value("--token").unwrap_or_else(|| "emulator-token".into());
    let emulator = Emulator::start(EmulatorConfig { tokens: vec![Token::new(token, "highlander", Access::Write)], port }).await?;
    println!("gist emulator listening on {}", emulator.url());
    if args.iter().any(|a| a == "--gist") {
        println!("gist id {}", emulator.control().create_gist("highlander", &[("README.md", "Highlander leases live here.")]));
    }
    tokio::signal::ctrl_c().await?;
    emulator.stop().await;
    Ok(())
}
