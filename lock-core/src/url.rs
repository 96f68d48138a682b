//! Store URLs: `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][,HOST…][/PATH][?KEY=VALUE&…]`,
//! split once, here, and interpreted by each backend ([`Backend`](crate::Backend)).
//!
//! Errors name the scheme and the part or parameter that is wrong, never the URL
//! itself: it may hold a password. Parameters are percent-decoded; a parameter given
//! twice, or one the backend does not know, is an error.

use crate::error::{Error, Result};
use std::{fmt, time::Duration};

/// A parsed store URL. Its `Debug` form shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    hosts: Vec<String>,
    path: String,
    params: Vec<(String, String)>,
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreUrl")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("hosts", &self.hosts)
            .field("path", &self.path)
            .field("params", &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

fn config(message: String) -> Error {
    Error::Config(message)
}

/// Decodes `%XX` escapes; `what` names the part in the error.
pub fn percent_decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return Err(config(format!("the store URL's {what} has a malformed %-escape"))),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| config(format!("the store URL's {what} decodes to invalid UTF-8")))
}

impl StoreUrl {
    /// Splits a URL into its parts. Only the shape is checked here; what each part
    /// means is the backend's business.
    pub fn parse(url: &str) -> Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(config("a store URL looks like SCHEME://…".into()));
        };
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(config("a store URL's scheme is letters and digits, as in postgres://".into()));
        }
        if url.chars().any(char::is_control) {
            return Err(config(format!("the {scheme}:// URL contains a control character")));
        }
        let scheme = scheme.to_ascii_lowercase();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if rest.contains('#') || query.is_some_and(|q| q.contains('#')) {
            return Err(config(format!("{scheme}:// URLs take no #fragment (percent-encode a literal # as %23)")));
        }
        // The authority ends at the first '/': an '@' after it is part of the path.
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (name, password) = match u.split_once(':') {
                    Some((n, p)) => (n, Some(percent_decode(p, "password")?)),
                    None => (u, None),
                };
                (Some(percent_decode(name, "user name")?).filter(|n| !n.is_empty()), password)
            }
        };
        let hosts = hosts.split(',').filter(|h| !h.is_empty()).map(|h| percent_decode(h, "host")).collect::<Result<Vec<_>>>()?;
        let path = percent_decode(path, "path")?;
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k, "parameter name")?;
            let value = percent_decode(v, &format!("parameter {key}"))?;
            if params.iter().any(|(known, _)| *known == key) {
                return Err(config(format!("{scheme}:// parameter {key} is given twice")));
            }
            params.push((key, value));
        }
        Ok(Self { scheme, user, password, hosts, path, params })
    }

    /// The scheme, lower-case.
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The user name from the user-info, if any.
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password from the user-info, if any. Never print it.
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The comma-separated hosts of the authority (`host:port` each, as written).
    #[must_use]
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The path after the authority, without its leading `/`, decoded.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The local file or directory a URL of a scheme that names one points at, as an
    /// absolute path: `SCHEME:///var/lib/x` is `/var/lib/x` (the empty authority is
    /// this machine; `localhost` is accepted as the same). `what` names the thing in
    /// errors ("database file", "directory"). Neither user-info nor another host is.
    pub fn local_path(&self, what: &str) -> Result<std::path::PathBuf> {
        let scheme = &self.scheme;
        self.no_userinfo(&format!("a local {what} has no credentials"))?;
        if self.hosts.len() > 1 || self.hosts.iter().any(|h| h != "localhost") {
            return Err(config(format!(
                "{scheme}:// URLs name a local {what} by its absolute path, as in {scheme}:///var/lib/highlander/leases (three slashes, no host)"
            )));
        }
        if self.path.is_empty() {
            return Err(config(format!("{scheme}:// URL needs a {what}, as in {scheme}:///var/lib/highlander/leases")));
        }
        Ok(std::path::PathBuf::from(format!("/{}", self.path)))
    }

    /// The query parameters, for the backend to take one by one.
    #[must_use]
    pub fn params(&self) -> Params<'_> {
        Params { scheme: &self.scheme, left: self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect() }
    }

    /// The one host of a scheme that takes exactly one (`what` names it: "table", "bucket").
    pub fn single_host(&self, what: &str) -> Result<&str> {
        match self.hosts.as_slice() {
            [one] => Ok(one),
            [] => Err(config(format!("{}:// URL needs a {what}, as in {}://{}", self.scheme, self.scheme, what.to_uppercase()))),
            _ => Err(config(format!("{}:// URL names one {what}, not a list", self.scheme))),
        }
    }

    /// Refuses user-info for schemes whose credentials come from elsewhere.
    pub fn no_userinfo(&self, instead: &str) -> Result<()> {
        if self.user.is_some() || self.password.is_some() {
            return Err(config(format!("{}:// URLs take no user or password: {instead}", self.scheme)));
        }
        Ok(())
    }
}

/// `host:port` split, with the port checked: `what` names the host in errors (never
/// its text, which may be a mistyped password).
pub fn host_port(scheme: &str, index: usize, host: &str, default_port: u16) -> Result<(String, u16)> {
    let bad = || config(format!("{scheme}:// host {} is not HOST[:PORT]", index + 1));
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [IPv6]:port
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (addr, Some(p)),
            None if after.is_empty() => (addr, None),
            None => return Err(bad()),
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
    if !valid_name {
        return Err(bad());
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.bytes().all(|b| b.is_ascii_digit()).then(|| p.parse::<u16>()) {
            Some(Ok(n)) if n > 0 => n,
            _ => return Err(config(format!("{scheme}:// host {}: the port is not a number from 1 to 65535", index + 1))),
        },
    };
    Ok((name.to_string(), port))
}

/// The parameters a backend has not taken yet. Take each known one, then call
/// [`finish`](Self::finish), which names any left over.
#[derive(Debug)]
pub struct Params<'a> {
    scheme: &'a str,
    left: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    /// Takes `key`. A parameter given with an empty value (`endpoint=`) is an error, not
    /// a default: a value lost from a template must not quietly mean "the real cloud".
    pub fn take(&mut self, key: &str) -> Result<Option<&'a str>> {
        let Some(i) = self.left.iter().position(|(k, _)| *k == key) else {
            return Ok(None);
        };
        match self.left.remove(i).1 {
            "" => Err(config(format!("{}:// parameter {key} is empty: give it a value or leave it out", self.scheme))),
            value => Ok(Some(value)),
        }
    }

    /// Takes a `true` / `false` parameter (also 1/0, yes/no), false when absent.
    pub fn flag(&mut self, key: &str) -> Result<bool> {
        self.flag_or(key, false)
    }

    /// Takes a `true` / `false` parameter (also 1/0, yes/no), `default` when absent.
    pub fn flag_or(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.take(key)? {
            None => Ok(default),
            Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(_) => Err(config(format!("{}:// parameter {key} must be true or false (or 1/0, yes/no)", self.scheme))),
        }
    }

    /// Takes a duration (`15s`, `500ms`; see [`parse_duration`]).
    pub fn duration(&mut self, key: &str) -> Result<Option<Duration>> {
        let scheme = self.scheme;
        self.take(key)?.map(|v| parse_duration(v).map_err(|e| config(format!("{scheme}:// parameter {key}: {e}")))).transpose()
    }

    /// Takes a whole number: decimal digits only (no sign, no spaces), within `T`'s range.
    pub fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>> {
        let scheme = self.scheme;
        let bad = || config(format!("{scheme}:// parameter {key} must be a whole number"));
        self.take(key)?
            .map(|v| if v.bytes().all(|b| b.is_ascii_digit()) { v.parse::<T>().map_err(|_| bad()) } else { Err(bad()) })
            .transpose()
    }

    /// Fails naming the first parameter nobody took, and the ones this scheme knows.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        match self.left.first() {
            None => Ok(()),
            Some((k, _)) => Err(config(format!(
                "{}:// URLs do not take parameter {} (known: {})",
                self.scheme,
                crate::Escaped(k),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))),
        }
    }
}

/// Parses `15s`, `500ms`, `2m`, `1h`, `1.5s` (and bare seconds) into a duration of at
/// most a day, with a message that says what is wrong.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shown = crate::Escaped(text);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("invalid duration {shown}: expected a number and a unit, like 15s or 500ms"));
    }
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("invalid duration {shown}: unknown unit (use ms, s, m or h)")),
    };
    let too_long = || format!("duration {shown} is longer than {:?}, the most any setting takes", crate::elector::MAX_LEASE_DURATION);
    // Integer arithmetic, checked: no float rounding, no overflow however many digits.
    if whole.len() > 20 {
        return Err(too_long());
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_long())? };
    let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(too_long)?;
    let mut scale = nanos_per_unit;
    for digit in frac.chars().take(18) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit.to_digit(10).unwrap_or(0)) * scale).ok_or_else(too_long)?;
    }
    if nanos > crate::elector::MAX_LEASE_DURATION.as_nanos() {
        return Err(too_long());
    }
    let nanos = u64::try_from(nanos).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_path_keeps_its_leading_slash_and_refuses_hosts() {
        let url = StoreUrl::parse("sqlite:///var/lib/leases.db?x=1").expect("parses");
        assert_eq!(url.path(), "var/lib/leases.db");
        assert_eq!(url.local_path("database file").expect("local"), std::path::Path::new("/var/lib/leases.db"));
        let localhost = StoreUrl::parse("sqlite://localhost/tmp/a%20b.db").expect("parses");
        assert_eq!(localhost.local_path("database file").expect("local"), std::path::Path::new("/tmp/a b.db"));
        let remote = StoreUrl::parse("sqlite://db.example/leases.db").expect("parses").local_path("database file").expect_err("a host");
        assert!(remote.to_string().contains("sqlite:// URLs name a local database file"), "{remote}");
        let empty = StoreUrl::parse("sqlite://").expect("parses").local_path("database file").expect_err("no path");
        assert!(empty.to_string().contains("needs a database file"), "{empty}");
        let secret = StoreUrl::parse("sqlite://u:hunter2@/x.db").expect("parses").local_path("database file").expect_err("userinfo");
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
    }

    #[test]
    fn urls_split_into_user_hosts_path_and_parameters() {
        let u = StoreUrl::parse("Postgres://app:p%40ss@db1:5432,db2/ops?table=leases&sslmode=require").expect("parses");
        assert_eq!((u.scheme(), u.user(), u.password()), ("postgres", Some("app"), Some("p@ss")));
        assert_eq!(u.hosts(), ["db1:5432", "db2"]);
        assert_eq!(u.path(), "ops");
        let mut p = u.params();
        let taken = (p.take("table").expect("table"), p.take("sslmode").expect("sslmode"), p.take("table").expect("again"));
        assert_eq!(taken, (Some("leases"), Some("require"), None));
        p.finish(&["table", "sslmode"]).expect("all taken");
        assert!(!format!("{u:?}").contains("p@ss"), "{u:?}");
    }

    #[test]
    fn an_at_sign_in_the_path_is_not_user_info() {
        let u = StoreUrl::parse("etcd://e1:2379/team@x/leases").expect("parses");
        assert_eq!((u.user(), u.hosts(), u.path()), (None, &["e1:2379".to_string()][..], "team@x/leases"));
    }

    #[test]
    fn bad_urls_say_what_without_echoing_the_url() {
        for (url, expected) in [
            ("localhost:5432", "SCHEME://"),
            ("s3://b/%zz", "path has a malformed %-escape"),
            ("s3://b?region=a&region=b", "parameter region is given twice"),
            ("postgres://u:hunter2@h/db?x=1#frag", "no #fragment"),
            ("postgres://u:hunter2@h/db\n", "control character"),
        ] {
            let e = StoreUrl::parse(url).expect_err(url).to_string();
            assert!(e.contains(expected), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
        let u = StoreUrl::parse("dynamodb://t?colour=red&key=k").expect("parses");
        let mut p = u.params();
        assert_eq!(p.take("key").expect("key"), Some("k"));
        let e = p.finish(&["region", "endpoint", "key"]).expect_err("unknown").to_string();
        assert!(e.contains("do not take parameter \"colour\" (known: region, endpoint, key)"), "{e}");
    }

    #[test]
    fn empty_or_signed_values_are_errors_not_defaults() {
        let u = StoreUrl::parse("dynamodb://t?endpoint=&n=%2B5&m=-1&f=&d=&ok=7").expect("parses");
        let mut p = u.params();
        let e = p.take("endpoint").expect_err("empty endpoint").to_string();
        assert!(e.contains("parameter endpoint is empty"), "{e}");
        for key in ["n", "m"] {
            let e = p.number::<usize>(key).expect_err(key).to_string();
            assert!(e.contains(&format!("parameter {key} must be a whole number")), "{e}");
        }
        assert!(p.flag_or("f", true).expect_err("empty flag").to_string().contains("parameter f is empty"));
        assert!(p.duration("d").expect_err("empty duration").to_string().contains("parameter d is empty"));
        assert_eq!(p.number::<u8>("ok").expect("digits"), Some(7));
        assert!(p.flag_or("absent", true).expect("absent"));
        p.finish(&[]).expect("all taken, even the refused ones");
    }

    #[test]
    fn hosts_and_ports_are_checked_without_echoing_them() {
        assert_eq!(host_port("x", 0, "db:6543", 5432).expect("ok"), ("db".into(), 6543));
        assert_eq!(host_port("x", 0, "[::1]:5", 5432).expect("ok"), ("::1".into(), 5));
        assert_eq!(host_port("x", 0, "db", 5432).expect("ok"), ("db".into(), 5432));
        for (bad, why) in [
            ("db:abc", "port is not a number"),
            ("db:0", "port"),
            ("db:99999", "port"),
            ("db:+1", "port"),
            ("ops:hunter2host:2379", "port"),
            ("us er:pw@x", "not HOST"),
        ] {
            let e = host_port("x", 1, bad, 1).expect_err(bad).to_string();
            assert!(e.contains(why) && e.contains("host 2") && !e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_take_units_and_stay_bounded() {
        for (text, ms) in [("15s", 15_000), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000), ("1.5s", 1_500), ("7", 7_000), (".5s", 500)]
        {
            assert_eq!(parse_duration(text).expect(text), Duration::from_millis(ms), "{text}");
        }
        for bad in ["", "s", "10x", "-1s", "ten", "1.2.3s", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for huge in ["10000000000000000000s", "100000000000000000000s", "99999999999999999999999999999999999h", "25h", "86401s"] {
            let e = parse_duration(huge).expect_err(huge);
            assert!(e.contains("longer than 86400s"), "{huge}: {e}");
        }
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
    }
}
