//! A gist store on a fresh emulator.

use lock_gist::{
    GistStore,
    emulator::{Access, Emulator, EmulatorConfig, Token},
};
use std::{sync::Arc, time::Duration};

pub(crate) const TOKEN: &str = "ghp_test-token-do-not-print";
#[allow(dead_code, reason = "not every test binary uses it")]
pub(crate) const READ_ONLY: &str = "github_pat_read-only";
#[allow(dead_code, reason = "not every test binary uses it")]
pub(crate) const NO_SCOPE: &str = "ghp_no-gist-scope";

pub(crate) async fn emulator() -> Arc<Emulator> {
    let tokens = vec![
        Token::new(TOKEN, "highlander", Access::Write),
        Token::new(READ_ONLY, "highlander", Access::ReadOnly),
        Token::new(NO_SCOPE, "highlander", Access::NoGistScope),
    ];
    Arc::new(Emulator::start(EmulatorConfig { tokens, port: 0 }).await.expect("emulator starts on 127.0.0.1"))
}

pub(crate) fn store(emulator: &Emulator, gist: &str, token: &str) -> lock_core::Result<GistStore> {
    // The emulator is not GitHub: the conformance suite's 300 ms retry period is allowed.
    GistStore::builder(gist).api(emulator.url()).token(token).retry_period(Duration::from_millis(300)).allow_over_budget(true).build()
}

/// The harness: a new emulator and gist; every client a new store on it.
#[allow(dead_code, reason = "not every test binary uses it")]
pub(crate) async fn harness() -> impl lock_conformance::StoreHarness {
    let emulator = emulator().await;
    let gist = emulator.control().create_gist("highlander", &[("README.md", "Highlander leases")]);
    lock_conformance::Harness::new(move || {
        let (emulator, gist) = (emulator.clone(), gist.clone());
        async move { store(&emulator, &gist, TOKEN) }
    })
}
