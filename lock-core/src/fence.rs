//! Fenced writes: a write that commits only while the lock's record still names the
//! writer's term. A lease tells a leader it *was* leader at its last renewal; between
//! that and its next write it can be paused or partitioned, and its write lands after
//! a new leader's. Stores with transactions check the term in the write's own
//! transaction (each backend crate has its way: a Postgres transaction that locks the
//! lease row, an etcd transaction that compares the term, a DynamoDB `ConditionCheck`);
//! everything else passes the fencing token to the resource (see `docs/fencing.md`).

use crate::{
    elector::Leadership,
    error::{Error, Result},
    name::LockName,
    record::{FencingToken, LeaderElectionRecord},
};

/// A leader's term, as a store can check it: the lock, the holder and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencingTerm {
    /// The lock.
    pub lock: LockName,
    /// The holder identity the record must name.
    pub holder: String,
    /// The fencing token the record must carry.
    pub token: FencingToken,
}

impl FencingTerm {
    /// The term `highlander run` handed its command, from `HIGHLANDER_LOCK`,
    /// `HIGHLANDER_IDENTITY` and `HIGHLANDER_FENCING_TOKEN`.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| Error::Config(format!("{name} is not set (is this running under `highlander run`?)")))
        };
        let lock = LockName::new(var("HIGHLANDER_LOCK")?)?;
        let holder = var("HIGHLANDER_IDENTITY")?;
        let token = var("HIGHLANDER_FENCING_TOKEN")?
            .parse()
            .map(FencingToken)
            .map_err(|_| Error::Config("HIGHLANDER_FENCING_TOKEN is not a number".into()))?;
        Ok(Self { lock, holder, token })
    }

    /// Whether `record` still names this term.
    #[must_use]
    pub fn is_named_by(&self, record: &LeaderElectionRecord) -> bool {
        record.holder_identity == self.holder && record.fencing_token == Some(self.token)
    }

    /// The error of a write this term may no longer make, because the record moved.
    pub fn moved(&self, store: &dyn std::fmt::Display, now: Option<&LeaderElectionRecord>) -> Error {
        let reason = match now {
            None => "the lock has no record any more".to_string(),
            Some(r) if !r.is_held() => format!("the lease of term {} was released", self.token),
            Some(r) => format!(
                "the lease moved from term {} to {} (fencing token {})",
                self.token,
                crate::Escaped(&r.holder_identity),
                r.fencing_token.map_or_else(|| "none".into(), |t| t.to_string())
            ),
        };
        Error::Fenced { lock: self.lock.clone(), store: store.to_string(), reason }
    }
}

/// Who may make a fenced write: a [`Leadership`] (checked locally against its
/// deadline first, before any round trip) or a [`FencingTerm`] known otherwise (from
/// `highlander run`'s environment).
pub trait Fence {
    /// The term to check in the store; an error, without any round trip, if this
    /// writer already knows its term is over.
    fn term(&self) -> Result<FencingTerm>;
}

impl Fence for FencingTerm {
    fn term(&self) -> Result<FencingTerm> {
        Ok(self.clone())
    }
}

impl Fence for Leadership {
    fn term(&self) -> Result<FencingTerm> {
        self.ensure_valid()?;
        Ok(FencingTerm { lock: self.lock().clone(), holder: self.identity().to_string(), token: self.fencing_token() })
    }
}
