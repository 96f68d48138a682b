//! One candidate on a Postgres lock: leads, renews, and releases on Ctrl-C.
//!
//! `cargo run -p lock-postgres --example postgres_elect -- postgres://user@127.0.0.1:5432/db [identity]`
//! (the password from the URL or `PGPASSWORD`). Start it twice to watch a standby.

use lock_core::{LeaderElector, LockName};
use lock_postgres::PostgresStore;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: postgres_elect POSTGRES_URL [IDENTITY]")?;
    let identity = args.next().unwrap_or_else(|| format!("candidate-{}", std::process::id()));
    let store = PostgresStore::builder(&url)?.build()?;
    store.ensure_schema().await?;
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
