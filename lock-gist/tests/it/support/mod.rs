//! A gist store on a fresh emulator.

use lock_gist::{
    GistStore,
    emulator::{Access, Emulator, EmulatorConfig, Token},
};
use std::{sync::Arc, time::Duration};

pub(crate) const TOKEN: &str = "ghp_test-token-do-not-print";
pub(crate) const READ_ONLY: &str = "github_pat_read-only";
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

/// The harness, by URL: a gist already running elsewhere when `LOCK_TEST_GIST_API` and
/// `LOCK_TEST_GIST_ID` are set (both, or it fails), else a new in-process emulator and
/// gist. The token is `GITHUB_TOKEN`'s, as a user's would be (scripts/test sets a test
/// one); the in-process emulator accepts it. Every client is a new store.
pub(crate) async fn harness() -> lock_conformance::Harness<lock_conformance::Connect> {
    let env = |k: &str| lock_conformance::fixtures::env(k);
    let token = env("GITHUB_TOKEN")
        .unwrap_or_else(|| panic!("GITHUB_TOKEN is not set: the gist store reads its token there (scripts/test sets a test one)"));
    let (api, gist, emulator) = match (env("LOCK_TEST_GIST_API"), env("LOCK_TEST_GIST_ID")) {
        (Some(api), Some(gist)) => (api, gist, None),
        (None, None) => {
            let emulator = Arc::new(
                Emulator::start(EmulatorConfig { tokens: vec![Token::new(token, "highlander", Access::Write)], port: 0 })
                    .await
                    .expect("emulator starts on 127.0.0.1"),
            );
            let gist = emulator.control().create_gist("highlander", &[("README.md", "Highlander leases")]);
            (emulator.url(), gist, Some(emulator))
        }
        _ => panic!("set both LOCK_TEST_GIST_API and LOCK_TEST_GIST_ID, or neither"),
    };
    // The emulator is not GitHub: the suite's 300 ms retry period is over GitHub's budget.
    let url = format!("gist://{gist}?api={api}&allow_over_budget=true");
    let harness = lock_conformance::fixtures::harness(&lock_gist::BACKEND, Ok(url)).await;
    // Each test's emulator lives as long as the test process.
    static EMULATORS: std::sync::Mutex<Vec<Arc<Emulator>>> = std::sync::Mutex::new(Vec::new());
    if let Some(e) = emulator {
        EMULATORS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(e);
    }
    harness
}
