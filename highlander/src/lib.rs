//! *There can be only one.* Leader election across clusters, on any store with
//! compare-and-set: the facade over lock-core and every backend crate.
//!
//! ```
//! use highlander::{LeaderElector, LockName, open};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), highlander::Error> {
//! // postgres://…, etcd://…, dynamodb://…, s3://…, gist://…, memory://…
//! let store = open("memory://example").await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "stalin").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! Backends are cargo features (`postgres`, `etcd`, `dynamodb`, `s3`, `gist`, `file`,
//! `spanner`, `redis`, `zookeeper`, `azblob`, `aztable`, all on by default); a URL whose feature is off gets an error naming the feature. Each
//! backend crate parses its own URLs ([`Backend`]); this crate only dispatches on the
//! scheme.

pub mod demo;

#[cfg(any(feature = "azblob", feature = "aztable"))]
pub use lock_azure;
pub use lock_core::{self, *};
#[cfg(feature = "dynamodb")]
pub use lock_dynamodb;
#[cfg(feature = "etcd")]
pub use lock_etcd;
#[cfg(feature = "file")]
pub use lock_file;
#[cfg(feature = "gist")]
pub use lock_gist;
#[cfg(feature = "postgres")]
pub use lock_postgres;
#[cfg(feature = "redis")]
pub use lock_redis;
#[cfg(feature = "s3")]
pub use lock_s3;
#[cfg(feature = "spanner")]
pub use lock_spanner;
#[cfg(feature = "zookeeper")]
pub use lock_zookeeper;

use std::sync::{Arc, PoisonError, RwLock};

/// Declares the backends: one line each, `"feature" [schemes…] => backend`, compiled in
/// when the feature is on and named in an error when it is off (a test checks the
/// schemes written here are the backend's own).
macro_rules! backends {
    ($($feature:literal [$($scheme:literal),+] => $backend:path),* $(,)?) => {
        /// The backends compiled in, the in-process memory store first.
        pub static BACKENDS: &[&dyn Backend] = &[
            &lock_core::backend::MEMORY,
            $( #[cfg(feature = $feature)] &$backend, )*
        ];

        /// Every backend feature of this crate, compiled in or not.
        pub const FEATURES: &[&str] = &[$($feature),*];

        /// Every backend feature with its URL schemes, compiled in or not.
        pub const FEATURE_SCHEMES: &[(&str, &[&str])] = &[$(($feature, &[$($scheme),+])),*];
    };
}

backends! {
    "postgres" ["postgres", "postgresql"] => lock_postgres::BACKEND,
    "etcd" ["etcd"] => lock_etcd::BACKEND,
    "dynamodb" ["dynamodb"] => lock_dynamodb::BACKEND,
    "s3" ["s3"] => lock_s3::BACKEND,
    "gist" ["gist"] => lock_gist::BACKEND,
    "file" ["file"] => lock_file::BACKEND,
    "spanner" ["spanner"] => lock_spanner::BACKEND,
    "redis" ["redis", "rediss"] => lock_redis::BACKEND,
    "zookeeper" ["zookeeper"] => lock_zookeeper::BACKEND,
    "azblob" ["azblob"] => lock_azure::BLOB,
    "aztable" ["aztable"] => lock_azure::TABLE,
}

/// Backends of other crates, installed in this process by [`install_backends`].
static INSTALLED: RwLock<Vec<&'static dyn Backend>> = RwLock::new(Vec::new());

/// Adds backends from crates outside this one (a store of your own) to those compiled
/// in, for this process: from then on [`open`], [`backends`], [`schemes`] and every
/// `highlander` subcommand built with `highlander_cli::main_with` know their schemes.
/// Call it once, at the start of `main`. A scheme that is already known (compiled in or
/// installed before) is an error naming it, and nothing is installed.
pub fn install_backends(extra: &[&'static dyn Backend]) -> Result<()> {
    let mut installed = INSTALLED.write().unwrap_or_else(PoisonError::into_inner);
    let mut taken: Vec<&str> = BACKENDS.iter().chain(installed.iter()).flat_map(|b| b.schemes().iter().copied()).collect();
    taken.extend(FEATURE_SCHEMES.iter().flat_map(|(_, schemes)| schemes.iter().copied()));
    for backend in extra {
        if backend.schemes().is_empty() {
            return Err(Error::Config(format!("the backend for {} answers to no URL scheme", backend.grammar())));
        }
        for scheme in backend.schemes() {
            // URLs' schemes are matched lower-case, as StoreUrl reads them.
            let usable = scheme.starts_with(|c: char| c.is_ascii_lowercase())
                && scheme.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !usable {
                return Err(Error::Config(format!(
                    "the backend for {} answers to {scheme:?}, which no URL can name: a scheme is lower-case letters, digits, + - .",
                    backend.grammar()
                )));
            }
            if taken.contains(scheme) {
                return Err(Error::Config(format!("the {scheme}:// scheme already has a backend: one scheme, one backend")));
            }
            taken.push(scheme);
        }
    }
    installed.extend_from_slice(extra);
    Ok(())
}

/// Every backend of this process: those compiled in ([`BACKENDS`]), then those installed.
#[must_use]
pub fn backends() -> Vec<&'static dyn Backend> {
    let installed = INSTALLED.read().unwrap_or_else(PoisonError::into_inner);
    BACKENDS.iter().copied().chain(installed.iter().copied()).collect()
}

/// The backend for a URL's scheme, or an error naming the feature to enable (or the
/// schemes there are).
pub fn backend(url: &StoreUrl) -> Result<&'static dyn Backend> {
    let scheme = url.scheme();
    if let Some(b) = backends().into_iter().find(|b| b.schemes().contains(&scheme)) {
        return Ok(b);
    }
    if let Some((feature, _)) = FEATURE_SCHEMES.iter().find(|(_, schemes)| schemes.contains(&scheme)) {
        return Err(Error::Config(format!(
            "the {feature} backend is not compiled in: enable the `{feature}` feature of the highlander crate"
        )));
    }
    Err(Error::Config(format!("unknown store scheme {}; known schemes: {}", Escaped(scheme), schemes().join(", "))))
}

/// Every URL scheme compiled in, as `scheme://`, for help text.
#[must_use]
pub fn schemes() -> Vec<String> {
    backends().into_iter().flat_map(|b| b.schemes()).map(|s| format!("{s}://")).collect()
}

/// Opens the store a URL names and checks it can be used: one read of a probe lock,
/// so a wrong URL, a missing table, refused credentials or an unreachable store fail
/// here, naming the store, rather than as a candidate that never wins. Credentials
/// come from the environment or the URL's user-info and are never printed.
pub async fn open(url: &str) -> Result<SharedStore> {
    open_with(url, &OpenOptions::default()).await
}

/// As [`open`], for an elector with these timings (a store's budget and call timeouts follow them).
pub async fn open_with(url: &str, options: &OpenOptions) -> Result<SharedStore> {
    let store = open_unchecked(url, options).await?;
    probe(&*store, options).await?;
    Ok(store)
}

/// Opens the store without touching it (connections are made on first use).
pub async fn open_unchecked(url: &str, options: &OpenOptions) -> Result<SharedStore> {
    Ok(open_raw(url, options).await?)
}

/// Opens the store with its raw back door ([`RawAccess`]): what the conformance suite
/// needs to plant and inspect records behind the store's back. Not checked.
pub async fn open_raw(url: &str, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
    let parsed = StoreUrl::parse(url)?;
    backend(&parsed)?.open(&parsed, options).await
}

/// Creates what the store needs if it is missing: a table, a bucket (see each backend).
pub async fn create_if_missing(url: &str, options: &OpenOptions) -> Result<()> {
    let parsed = StoreUrl::parse(url)?;
    backend(&parsed)?.create(&parsed, options).await
}

/// The environment variables that hold the secrets of the store a URL names.
pub fn secret_env(url: &str) -> Result<&'static [&'static str]> {
    Ok(backend(&StoreUrl::parse(url)?)?.secret_env())
}

/// The environment variables that hold the secrets of any backend compiled in, the
/// URL's own variable (`HIGHLANDER_STORE`) included: what a command run under a lock is
/// not given, whichever store holds the lock.
#[must_use]
pub fn every_secret_env() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = backends().into_iter().flat_map(|b| b.secret_env().iter().copied()).collect();
    names.push("HIGHLANDER_STORE");
    names.sort_unstable();
    names.dedup();
    names
}

/// One bounded read, turning "no answer" into an error that names the store.
pub async fn probe(store: &dyn LeaseStore, options: &OpenOptions) -> Result<()> {
    let lock = LockName::new("highlander-probe")?;
    match lock_core::bounded(&lock, &store, "get", options.call_timeout, store.get(&lock)).await {
        // A probe record that does not decode is someone's data, not our problem.
        Ok(_) | Err(Error::Corrupt { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schemes `backends!` names for each feature are the backend's own.
    #[test]
    #[cfg(all(
        feature = "postgres",
        feature = "etcd",
        feature = "dynamodb",
        feature = "s3",
        feature = "gist",
        feature = "file",
        feature = "spanner",
        feature = "redis",
        feature = "zookeeper",
        feature = "azblob",
        feature = "aztable"
    ))]
    fn each_feature_declares_its_backends_schemes() {
        assert_eq!(BACKENDS.len(), FEATURES.len() + 1, "every feature is compiled in for this test");
        for (backend, (feature, schemes)) in BACKENDS[1..].iter().zip(FEATURE_SCHEMES) {
            assert_eq!(backend.schemes(), *schemes, "backends! line of feature {feature}");
        }
    }

    /// The READMEs' URL tables and feature lists name every backend, and no other.
    #[test]
    fn the_readmes_name_every_backend_and_no_other() {
        let all: std::collections::BTreeSet<&str> = FEATURE_SCHEMES.iter().flat_map(|(_, s)| s.iter().copied()).chain(["memory"]).collect();
        for (name, text) in [("README.md", include_str!("../../README.md")), ("highlander/README.md", include_str!("../README.md"))] {
            let in_table: std::collections::BTreeSet<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|row| row.split(" | ").next())
                .flat_map(|cell| cell.split("://").collect::<Vec<_>>().into_iter().rev().skip(1).rev())
                .filter_map(|before| before.rsplit(|c: char| !c.is_ascii_alphanumeric()).next())
                .filter(|s| !s.is_empty() && !s.starts_with("http"))
                .collect();
            assert_eq!(in_table, all, "{name}: the URL table's schemes");
        }
        let features = include_str!("../README.md")
            .split_once("behind a cargo feature (")
            .and_then(|(_, rest)| rest.split_once(';'))
            .map(|(list, _)| list.split(", ").map(|f| f.trim_matches('`')).collect::<Vec<_>>())
            .expect("highlander/README.md lists the features: behind a cargo feature (`a`, `b`; …)");
        assert_eq!(features, FEATURES, "highlander/README.md's feature list");
    }

    /// A backend of another crate: memory stores under its own scheme.
    struct Outside(&'static [&'static str]);

    #[async_trait]
    impl Backend for Outside {
        fn schemes(&self) -> &'static [&'static str] {
            self.0
        }
        fn grammar(&self) -> &'static str {
            "outside://NAME"
        }
        fn secret_env(&self) -> &'static [&'static str] {
            &["OUTSIDE_TOKEN"]
        }
        async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
            let inner = StoreUrl::parse(&format!("memory://outside-{}", url.single_host("name")?))?;
            lock_core::backend::MEMORY.open(&inner, options).await
        }
    }

    #[tokio::test]
    async fn an_installed_backend_is_opened_listed_and_its_secrets_withheld() {
        static OUTSIDE: Outside = Outside(&["outside", "outside2"]);
        static CLASH: Outside = Outside(&["elsewhere", "postgres"]);
        static TWICE: Outside = Outside(&["outside"]);
        static UPPER: Outside = Outside(&["Outside3"]);
        assert!(open("outside://a").await.is_err_and(|e| e.to_string().contains("unknown store scheme")));
        install_backends(&[&OUTSIDE]).expect("a new scheme installs");
        assert!(open("outside://a").await.is_ok());
        assert!(schemes().contains(&"outside2://".to_string()), "{:?}", schemes());
        assert!(every_secret_env().contains(&"OUTSIDE_TOKEN"));
        assert_eq!(backends().len(), BACKENDS.len() + 1);
        for (clash, scheme) in [(&CLASH, "postgres"), (&TWICE, "outside")] {
            let error = install_backends(&[clash]).expect_err("a taken scheme").to_string();
            assert!(error.contains(&format!("the {scheme}:// scheme already has a backend")), "{error}");
        }
        let error = install_backends(&[&UPPER]).expect_err("upper case").to_string();
        assert!(error.contains("which no URL can name"), "{error}");
        assert!(open("elsewhere://a").await.is_err(), "nothing of a refused list is installed");
        assert_eq!(backends().len(), BACKENDS.len() + 1);
    }

    #[tokio::test]
    async fn memory_urls_share_a_store_by_name() {
        let lock = LockName::new("shared").expect("valid");
        let a = open("memory://facade-test").await.expect("opens");
        let b = open("memory://facade-test").await.expect("opens");
        let c = open("memory://other").await.expect("opens");
        a.create(&lock, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create");
        assert!(b.get(&lock).await.expect("get").is_some(), "the same name is the same store");
        assert!(c.get(&lock).await.expect("get").is_none(), "another name is another store");
    }

    #[tokio::test]
    async fn unknown_schemes_and_bad_memory_urls_say_what_is_wrong() {
        let err = open("redis2://u:hunter2@h").await.map(drop).expect_err("unknown").to_string();
        assert!(err.contains("unknown store scheme \"redis2\"") && err.contains("memory://") && !err.contains("hunter2"), "{err}");
        let err = open("memory://x?y=1").await.map(drop).expect_err("no parameters").to_string();
        assert!(err.contains("do not take parameter \"y\""), "{err}");
        // A backend's scheme is known whether or not it is compiled in; nothing else is.
        for (url, feature) in [("rediss://h", "redis"), ("postgresql://h/db", "postgres"), ("zookeeper://h/p", "zookeeper")] {
            let found = backend(&StoreUrl::parse(url).expect("parses"));
            let name = |b: &dyn Backend| b.schemes().first().copied();
            match (found, BACKENDS.iter().any(|b| name(*b) == Some(feature))) {
                (Ok(b), true) => assert_eq!(name(b), Some(feature), "{url}"),
                (Err(e), false) => assert!(e.to_string().contains(&format!("the {feature} backend is not compiled in")), "{url}: {e}"),
                (found, compiled) => panic!("{url}: compiled in: {compiled}, found: {:?}", found.map(name)),
            }
        }
        let err = open("postgresx://h/db").await.map(drop).expect_err("unknown").to_string();
        assert!(err.contains("unknown store scheme \"postgresx\""), "{err}");
    }

    #[cfg(all(feature = "postgres", feature = "etcd", feature = "gist"))]
    #[tokio::test]
    async fn backend_urls_open_their_stores_without_connecting() {
        let options = OpenOptions::default();
        let pg = open_unchecked("postgres://app@127.0.0.1:5432/db?table=locks", &options).await.expect("postgres");
        assert!(pg.to_string().contains("\"public\".\"locks\""), "{pg}");
        let etcd = open_unchecked("etcd://127.0.0.1:2379,127.0.0.1:22379/team", &options).await.expect("etcd");
        assert!(etcd.to_string().contains("127.0.0.1:22379") && etcd.to_string().contains("team/"), "{etcd}");
        assert!(etcd.capabilities().is_atomic() && etcd.capabilities().monotonic_versions);
    }

    #[tokio::test]
    async fn an_empty_parameter_is_refused_by_every_backend_never_defaulted() {
        // An empty endpoint= once sent a DynamoDB store to the real cloud.
        let options = OpenOptions::default();
        for url in [
            "dynamodb://t?endpoint=",
            "dynamodb://t?region=",
            "dynamodb://t?max_in_flight=",
            "s3://b?endpoint=",
            "postgres://app@127.0.0.1/db?cancel=",
            "postgres://app@127.0.0.1/db?sslmode=",
            "postgres://app@127.0.0.1/db?table=",
            "etcd://127.0.0.1:2379/x?ca=",
            "gist://abc123?api=",
            "spanner://p/i/d?emulator=",
            "redis://127.0.0.1/0?prefix=",
            "zookeeper://127.0.0.1/x?session_timeout=",
        ] {
            let scheme = url.split("://").next().unwrap_or_default();
            if backend(&StoreUrl::parse(url).expect("parses")).is_err() {
                continue; // not compiled in: the scheme test covers that
            }
            let err = open_unchecked(url, &options).await.map(drop).expect_err(url).to_string();
            let key = url.rsplit('?').next().unwrap_or_default().trim_end_matches('=');
            assert!(err.contains(&format!("parameter {key} is empty")), "{url}: {err}");
            assert!(err.contains(scheme) || err.contains("dynamodb") || err.contains("s3"), "{url}: {err}");
        }
    }

    #[cfg(feature = "gist")]
    #[tokio::test]
    async fn the_gist_budget_follows_the_electors_retry_period() {
        // SAFETY of the test: the variable is read in this test only.
        let url = "gist://abc123?api=http://127.0.0.1:1";
        let two = OpenOptions::new(Timing { lease: std::time::Duration::from_secs(15), ..Timing::DEFAULT });
        let ten = OpenOptions::new(Timing {
            lease: std::time::Duration::from_secs(60),
            renew_deadline: std::time::Duration::from_secs(40),
            retry_period: std::time::Duration::from_secs(10),
        });
        let with_token = |e: Error| e.to_string();
        let err = open_unchecked(url, &two).await.map(drop).map_err(with_token).expect_err("over budget or no token");
        assert!(err.contains("secondary limit") || err.contains("GITHUB_TOKEN"), "{err}");
        let err = open_unchecked(url, &ten).await.map(drop).map_err(with_token);
        assert!(err.as_ref().map_or_else(|e| !e.contains("secondary limit"), |()| true), "10 s is within the budget: {err:?}");
    }

    #[cfg(not(feature = "gist"))]
    #[tokio::test]
    async fn a_url_whose_feature_is_off_names_the_feature() {
        let err = open("gist://abc123").await.map(drop).expect_err("gist is off");
        assert!(err.to_string().contains("enable the `gist` feature"), "{err}");
    }
}
