//! One candidate on a s3 lock: leads, renews, and releases on Ctrl-C.
//!
//! `cargo run -p lock-s3 --example s3_elect -- BUCKET [identity] [endpoint]`
//! (credentials and region from the standard AWS chain). Start it twice to watch a standby.

use lock_core::{LeaderElector, LockName};
use lock_s3::S3Store;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args.next().ok_or("usage: s3_elect BUCKET [IDENTITY] [ENDPOINT]")?;
    let identity = args.next().unwrap_or_else(|| format!("candidate-{}", std::process::id()));
    let mut builder = S3Store::builder(&target).path_style(true);
    if let Some(endpoint) = args.next() {
        builder = builder.endpoint(endpoint);
    }
    let store = builder.connect().await?;
    store.ensure_bucket().await?;
    println!("campaigning as {identity} on {store}");
    let elector = LeaderElector::builder(store, LockName::new("example")?, identity)
        .on_started_leading(|l| async move {
            println!("I am {}! I will lead you to greatness! (fencing token {})", l.identity(), l.fencing_token());
            l.lost().await;
            println!("no longer leading");
        })
        .on_new_leader(|who| println!("All hail {who}"))
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
