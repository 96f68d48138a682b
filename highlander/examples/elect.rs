//! One candidate on any store, by URL: leads, renews, and releases on Ctrl-C.
//!
//! `cargo run -p highlander --example elect -- STORE_URL [IDENTITY]`, e.g.
//! `postgres://app@127.0.0.1:5432/db` (password in PGPASSWORD), `etcd://127.0.0.1:2379/team`,
//! `dynamodb://leases?region=eu-west-1`, `s3://bucket/leases/`. Start it twice to watch a standby.

use highlander::{LeaderElector, LockName, OpenOptions};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: elect STORE_URL [IDENTITY]")?;
    let identity = args.next().unwrap_or_else(|| format!("candidate-{}", std::process::id()));
    highlander::create_if_missing(&url, &OpenOptions::default()).await?;
    let store = highlander::open(&url).await?;
    println!("campaigning as {identity} on {store}");
    let elector = LeaderElector::builder(store, LockName::new("example")?, identity)
        .on_started_leading(|l| async move {
            println!("I am {}! I will lead you to greatness! (fencing token {})", l.identity(), l.fencing_token());
            l.lost().await;
            println!("no longer leading");
        })
        .on_new_leader(|who| println!("All hail {}", highlander::display::Unquoted(who)))
        .build()?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    println!("{:?}", elector.run(shutdown).await);
    Ok(())
}
