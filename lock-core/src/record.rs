//! The lease record, byte-compatible with client-go's `LeaderElectionRecord` JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// A fencing token: strictly increasing across leadership terms of one lock.
///
/// Hand it to whatever the leader writes to, and have that resource reject any
/// token lower than the highest it has seen. A new term's token is
/// `max(highest token seen + 1, microseconds since the Unix epoch)` (see
/// [`FencingToken::next_after`]): it grows by one from the record while the record
/// lives, and from the wall clock when the record is lost (deleted, flushed,
/// restored from an older backup), so it does not go back as long as candidates'
/// wall clocks agree to within the time between two terms. Tokens stay below 2^53,
/// exact in JSON readers that use doubles, until the year 2255.
///
/// A client-go writer drops the `fencingToken` key; the next Highlander acquirer
/// then continues from `max(leaderTransitions, wall clock) + 1` as above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FencingToken {
    /// The token of a term that follows one whose highest known token is `highest`,
    /// with the wall clock reading `now`: above both, or `None` at `u64::MAX`.
    #[must_use]
    pub fn next_after(highest: u64, now: std::time::SystemTime) -> Option<Self> {
        let floor = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        highest.checked_add(1).map(|next| Self(next.max(floor)))
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The record a lock holds, as client-go's `resourcelock.LeaderElectionRecord`.
///
/// Serialises to the same keys in the same order as client-go
/// (`holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`,
/// `leaderTransitions`), so a Go reader understands a Highlander record and the
/// reverse. Highlander's own fields (`fencingToken`) are extra camelCase keys that
/// Go readers ignore; keys neither side knows are kept in [`extra`](Self::extra)
/// and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElectionRecord {
    /// Who holds the lease; empty when no one does (after a release).
    #[serde(default)]
    pub holder_identity: String,
    /// How long, after a candidate observed the last change, the lease stays valid.
    #[serde(default)]
    pub lease_duration_seconds: u32,
    /// When the current holder acquired the lease (a `null` in Go's zero-time form reads as `None`).
    #[serde(default, with = "rfc3339_opt")]
    pub acquire_time: Option<DateTime<Utc>>,
    /// When the holder last renewed the lease; informational, never used to judge expiry.
    #[serde(default, with = "rfc3339_opt")]
    pub renew_time: Option<DateTime<Utc>>,
    /// How many times the holder has changed.
    #[serde(default)]
    pub leader_transitions: u32,
    /// client-go's coordinated leader election strategy, kept as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// client-go's preferred holder, kept as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_holder: Option<String>,
    /// Highlander's fencing token for the current term (absent in records written by Go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<FencingToken>,
    /// Written by a candidate that found the lock without a record: a claim, not yet a
    /// term. Its holder leads only after the claim has stood for a lease; a leader still
    /// inside its term may write over it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claim: bool,
    /// Keys this version does not know, preserved on rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LeaderElectionRecord {
    /// A record naming `holder` with the given lease duration, acquired and renewed `now`.
    #[must_use]
    pub fn new(holder: impl Into<String>, lease_duration_seconds: u32, now: DateTime<Utc>) -> Self {
        Self {
            holder_identity: holder.into(),
            lease_duration_seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: 0,
            strategy: None,
            preferred_holder: None,
            fencing_token: None,
            claim: false,
            extra: Map::new(),
        }
    }

    /// This record released `now`, as client-go's release writes it: no holder and a
    /// lease of one second; transitions, the fencing token (the next term's is above
    /// it) and fields this library does not know are kept.
    #[must_use]
    pub fn released(&self, now: DateTime<Utc>) -> Self {
        let mut rec = self.clone();
        rec.holder_identity.clear();
        rec.lease_duration_seconds = 1;
        rec.acquire_time = Some(now);
        rec.renew_time = Some(now);
        rec.claim = false;
        rec
    }

    /// Whether someone holds the lease (the holder is not empty).
    #[must_use]
    pub fn is_held(&self) -> bool {
        !self.holder_identity.is_empty()
    }

    /// The record as JSON bytes, in client-go's key order.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses a record from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Times as RFC 3339 in UTC: whole seconds exactly as Go's `metav1.Time`
/// (`2026-04-20T07:08:56Z`), sub-second precision kept when present (Go parses both).
mod rfc3339_opt {
    use super::*;

    pub(super) fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        match raw.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 time {text:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const GO_RECORD: &str = r#"{"holderIdentity":"stalin","leaseDurationSeconds":60,"acquireTime":"2026-04-20T07:08:56Z","renewTime":"2026-04-20T07:13:24Z","leaderTransitions":3}"#;

    #[test]
    fn go_record_round_trips_byte_for_byte() {
        let rec = LeaderElectionRecord::from_json(GO_RECORD.as_bytes()).expect("parse");
        assert_eq!(rec.holder_identity, "stalin");
        assert_eq!(rec.lease_duration_seconds, 60);
        assert_eq!(rec.leader_transitions, 3);
        assert_eq!(rec.acquire_time, Some(Utc.with_ymd_and_hms(2026, 4, 20, 7, 8, 56).unwrap()));
        assert_eq!(rec.fencing_token, None);
        assert_eq!(String::from_utf8(rec.to_json().unwrap()).unwrap(), GO_RECORD);
    }

    #[test]
    fn fractional_seconds_and_offsets_parse() {
        let json = r#"{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2026-04-20T07:08:56.123456Z","renewTime":"2026-04-20T09:08:56.5+02:00","leaderTransitions":0}"#;
        let rec = LeaderElectionRecord::from_json(json.as_bytes()).expect("parse");
        let acquire = rec.acquire_time.unwrap();
        assert_eq!(acquire.timestamp_subsec_micros(), 123_456);
        assert_eq!(rec.renew_time.unwrap(), Utc.with_ymd_and_hms(2026, 4, 20, 7, 8, 56).unwrap() + chrono::Duration::milliseconds(500));
        // Sub-second precision survives a round trip.
        let again = LeaderElectionRecord::from_json(&rec.to_json().unwrap()).unwrap();
        assert_eq!(again, rec);
    }

    #[test]
    fn go_zero_times_strategy_and_preferred_holder_are_accepted() {
        let json = r#"{"holderIdentity":"","leaseDurationSeconds":1,"acquireTime":null,"renewTime":null,"leaderTransitions":7,"strategy":"OldestEmulationVersion","preferredHolder":"b"}"#;
        let rec = LeaderElectionRecord::from_json(json.as_bytes()).expect("parse");
        assert!(!rec.is_held());
        assert_eq!(rec.acquire_time, None);
        assert_eq!(rec.strategy.as_deref(), Some("OldestEmulationVersion"));
        assert_eq!(rec.preferred_holder.as_deref(), Some("b"));
        assert_eq!(String::from_utf8(rec.to_json().unwrap()).unwrap(), json);
    }

    #[test]
    fn fencing_token_and_unknown_keys_are_extra_keys() {
        let mut rec = LeaderElectionRecord::from_json(GO_RECORD.as_bytes()).unwrap();
        rec.fencing_token = Some(FencingToken(9));
        rec.extra.insert("futureField".into(), Value::from(true));
        let json = String::from_utf8(rec.to_json().unwrap()).unwrap();
        assert!(json.starts_with(&GO_RECORD[..GO_RECORD.len() - 1]), "{json}");
        assert!(json.ends_with(r#","fencingToken":9,"futureField":true}"#), "{json}");
        assert_eq!(LeaderElectionRecord::from_json(json.as_bytes()).unwrap(), rec);
    }

    #[test]
    fn next_tokens_grow_from_the_record_and_from_the_wall_clock() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let floor = 1_800_000_000_000_000;
        assert_eq!(FencingToken::next_after(0, at), Some(FencingToken(floor)), "a lost record: the wall clock");
        assert_eq!(FencingToken::next_after(floor, at), Some(FencingToken(floor + 1)), "the same microsecond: one more");
        assert_eq!(FencingToken::next_after(floor + 41, at), Some(FencingToken(floor + 42)), "a record ahead of this clock");
        assert_eq!(FencingToken::next_after(7, UNIX_EPOCH - Duration::from_secs(5)), Some(FencingToken(8)), "a clock before 1970");
        assert_eq!(FencingToken::next_after(u64::MAX, at), None, "never wraps");
        assert!(floor < 1 << 53, "exact as a JSON double");
    }

    #[test]
    fn wrong_types_and_bad_times_are_errors() {
        for bad in [
            r#"{"holderIdentity":5}"#,
            r#"{"holderIdentity":"a","leaseDurationSeconds":"15"}"#,
            r#"{"holderIdentity":"a","renewTime":"yesterday"}"#,
            r#"{"holderIdentity":"a","leaderTransitions":-1}"#,
            "not json",
            "[]",
        ] {
            assert!(LeaderElectionRecord::from_json(bad.as_bytes()).is_err(), "accepted {bad}");
        }
    }
}
