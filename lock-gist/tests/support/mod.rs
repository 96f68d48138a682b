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

#[allow(dead_code, reason = "not every test binary uses it")]
pub(crate) fn store(emulator: &Emulator, gist: &str, token: &str) -> lock_core::Result<GistStore> {
    // The emulator is not GitHub: the conformance suite's 300 ms retry period is allowed.
    GistStore::builder(gist).api(emulator.url()).token(token).retry_period(Duration::from_millis(300)).allow_over_budget(true).build()
}

/// The harness: a gist already running elsewhere when `LOCK_TEST_GIST_API`,
/// `LOCK_TEST_GIST_TOKEN` and `LOCK_TEST_GIST_ID` are set (all three, or it fails),
/// else a new in-process emulator and gist. Every client is a new store.
#[allow(dead_code, reason = "not every test binary uses it")]
pub(crate) async fn harness() -> impl lock_conformance::StoreHarness {
    let env = |k: &str| lock_conformance::fixtures::env(k);
    let (api, token, gist, emulator) = match (env("LOCK_TEST_GIST_API"), env("LOCK_TEST_GIST_TOKEN"), env("LOCK_TEST_GIST_ID")) {
        (Some(api), Some(token), Some(gist)) => (api, token, gist, None),
        (None, None, None) => {
            let emulator = emulator().await;
            let gist = emulator.control().create_gist("highlander", &[("README.md", "Highlander leases")]);
            (emulator.url(), TOKEN.to_string(), gist, Some(emulator))
        }
        _ => panic!("set all of LOCK_TEST_GIST_API, LOCK_TEST_GIST_TOKEN and LOCK_TEST_GIST_ID, or none"),
    };
    lock_conformance::Harness::new(move || {
        let (api, token, gist) = (api.clone(), token.clone(), gist.clone());
        let _keep_alive = emulator.clone();
        async move {
            // Not GitHub itself in tests: the suite's 300 ms retry period is allowed.
            GistStore::builder(gist).api(api).token(token).retry_period(Duration::from_millis(300)).allow_over_budget(true).build()
        }
    })
}
