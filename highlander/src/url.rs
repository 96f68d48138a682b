//! Store URLs: one string names a store and its settings. Secrets come from the
//! environment (or a URL's user-info) and are never printed back.

use lock_core::{Error, Result};
use std::{fmt, time::Duration};

/// A parsed store URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory://NAME`: an in-process store, shared by every `open` of the same name.
    Memory {
        /// The store's name within this process.
        name: String,
    },
    /// `postgres://user@host:5432/db?table=…&schema=…` (also `postgresql://`).
    Postgres {
        /// The connection string without Highlander's own parameters.
        connection: String,
        /// `table=`.
        table: Option<String>,
        /// `schema=`.
        schema: Option<String>,
    },
    /// `etcd://host:2379,host2:2379/prefix?tls=true&ca=PEM&cert=PEM&key=PEM`; credentials
    /// from user-info or `ETCD_USERNAME` / `ETCD_PASSWORD`. `ca`, `cert` and `key` (files)
    /// imply TLS: the CA that signed the servers' certificates, and a client certificate
    /// and key for mutual TLS (`--client-cert-auth`).
    Etcd {
        /// `http://` or `https://` endpoints.
        endpoints: Vec<String>,
        /// The key prefix, if given.
        prefix: Option<String>,
        /// User and password from the URL's user-info, if any.
        user: Option<(String, String)>,
        /// `ca=`: a PEM file of CA certificates to trust.
        ca: Option<String>,
        /// `cert=` and `key=`: PEM files of a client certificate and its key.
        client: Option<(String, String)>,
    },
    /// `dynamodb://TABLE?region=…&endpoint=…&key=…`.
    DynamoDb {
        /// The table.
        table: String,
        /// `region=`.
        region: Option<String>,
        /// `endpoint=`.
        endpoint: Option<String>,
        /// `key=`: the partition-key attribute.
        key_attribute: Option<String>,
    },
    /// `s3://BUCKET/prefix?region=…&endpoint=…&path_style=true`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, if given.
        prefix: Option<String>,
        /// `region=`.
        region: Option<String>,
        /// `endpoint=`.
        endpoint: Option<String>,
        /// `path_style=true`.
        path_style: bool,
    },
    /// `gist://GIST_ID?api=…&retry=10s&allow_over_budget=true`; the token from `GITHUB_TOKEN`.
    Gist {
        /// The gist id.
        id: String,
        /// `api=`: GitHub Enterprise or the emulator.
        api: Option<String>,
        /// `retry=`: the elector's retry period, for the write budget.
        retry_period: Option<Duration>,
        /// `allow_over_budget=true`.
        allow_over_budget: bool,
    },
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Connection strings and user-info can hold passwords: show only what is safe.
        match self {
            Self::Postgres { table, schema, .. } => {
                f.debug_struct("Postgres").field("table", table).field("schema", schema).finish_non_exhaustive()
            }
            Self::Etcd { endpoints, prefix, user, ca, client } => f
                .debug_struct("Etcd")
                .field("endpoints", endpoints)
                .field("prefix", prefix)
                .field("user", &user.as_ref().map(|(u, _)| u))
                .field("ca", ca)
                .field("client", client)
                .finish(),
            Self::Memory { name } => f.debug_struct("Memory").field("name", name).finish(),
            Self::DynamoDb { table, region, endpoint, key_attribute } => f
                .debug_struct("DynamoDb")
                .field("table", table)
                .field("region", region)
                .field("endpoint", endpoint)
                .field("key_attribute", key_attribute)
                .finish(),
            Self::S3 { bucket, prefix, region, endpoint, path_style } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("prefix", prefix)
                .field("region", region)
                .field("endpoint", endpoint)
                .field("path_style", path_style)
                .finish(),
            Self::Gist { id, api, retry_period, allow_over_budget } => f
                .debug_struct("Gist")
                .field("id", id)
                .field("api", api)
                .field("retry_period", retry_period)
                .field("allow_over_budget", allow_over_budget)
                .finish(),
        }
    }
}

/// The schemes `open` understands, with the cargo feature each needs.
pub const SCHEMES: &[(&str, Option<&str>)] = &[
    ("memory", None),
    ("postgres", Some("postgres")),
    ("postgresql", Some("postgres")),
    ("etcd", Some("etcd")),
    ("dynamodb", Some("dynamodb")),
    ("s3", Some("s3")),
    ("gist", Some("gist")),
];

fn config(msg: String) -> Error {
    Error::Config(msg)
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return Err(config("store URL has a malformed %-escape".into())),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| config("store URL decodes to invalid UTF-8".into()))
}

/// Parses `15s`, `500ms`, `2m`, `1h` (and bare seconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| config(format!("invalid duration {text:?}: expected a number and a unit, like 15s or 500ms")))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(config(format!("invalid duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"))),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(config(format!("invalid duration {text:?}")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Splits `?a=b&c=d`, decoded, refusing parameters the scheme does not know.
fn params(query: Option<&str>, known: &[&str], scheme: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if !known.contains(&k.as_str()) {
            return Err(config(format!("{scheme}:// URLs do not take parameter {k:?} (known: {})", known.join(", "))));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn get(params: &[(String, String)], key: &str) -> Option<String> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

fn flag(params: &[(String, String)], key: &str, scheme: &str) -> Result<bool> {
    match get(params, key).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(config(format!("{scheme}:// parameter {key} must be true or false, not {other:?}"))),
    }
}

fn non_empty(what: &str, scheme: &str, value: &str) -> Result<String> {
    let v = percent_decode(value)?;
    if v.is_empty() { Err(config(format!("{scheme}:// URL needs a {what}, as in {scheme}://{}", what.to_uppercase()))) } else { Ok(v) }
}

impl StoreUrl {
    /// Parses a store URL. Errors name the scheme and the parameter, never the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(config(format!("a store URL looks like SCHEME://…; known schemes: {}", scheme_list())));
        };
        let scheme = scheme.to_ascii_lowercase();
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        match scheme.as_str() {
            "memory" => {
                params(query, &[], "memory")?;
                Ok(Self::Memory { name: percent_decode(body.trim_end_matches('/'))? })
            }
            "postgres" | "postgresql" => {
                // Highlander's own parameters come out; the rest (sslmode, …) is the driver's.
                let (mut table, mut schema, mut kept) = (None, None, Vec::new());
                for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        Some(("table", v)) => table = Some(percent_decode(v)?),
                        Some(("schema", v)) => schema = Some(percent_decode(v)?),
                        _ => kept.push(pair),
                    }
                }
                let connection =
                    if kept.is_empty() { format!("{scheme}://{body}") } else { format!("{scheme}://{body}?{}", kept.join("&")) };
                Ok(Self::Postgres { connection, table, schema })
            }
            "etcd" => {
                let p = params(query, &["tls", "ca", "cert", "key"], "etcd")?;
                let ca = get(&p, "ca");
                let client = match (get(&p, "cert"), get(&p, "key")) {
                    (Some(cert), Some(key)) => Some((cert, key)),
                    (None, None) => None,
                    _ => return Err(config("etcd:// parameters cert and key go together (a client certificate and its key)".into())),
                };
                let tls = flag(&p, "tls", "etcd")? || ca.is_some() || client.is_some();
                let (userinfo, hosts_and_path) = match body.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, body),
                };
                let user = match userinfo {
                    Some(u) => {
                        let (name, password) = u.split_once(':').unwrap_or((u, ""));
                        Some((percent_decode(name)?, percent_decode(password)?))
                    }
                    None => None,
                };
                let (hosts, path) = hosts_and_path.split_once('/').unwrap_or((hosts_and_path, ""));
                let endpoints: Vec<String> =
                    hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("{}://{h}", if tls { "https" } else { "http" })).collect();
                if endpoints.is_empty() {
                    return Err(config("etcd:// URL needs at least one host, as in etcd://HOST:2379,HOST2:2379/prefix".into()));
                }
                let prefix =
                    Some(percent_decode(path)?).filter(|p| !p.is_empty()).map(|p| if p.ends_with('/') { p } else { format!("{p}/") });
                Ok(Self::Etcd { endpoints, prefix, user, ca, client })
            }
            "dynamodb" => {
                let p = params(query, &["region", "endpoint", "key"], "dynamodb")?;
                Ok(Self::DynamoDb {
                    table: non_empty("table", "dynamodb", body.trim_end_matches('/'))?,
                    region: get(&p, "region"),
                    endpoint: get(&p, "endpoint"),
                    key_attribute: get(&p, "key"),
                })
            }
            "s3" => {
                let p = params(query, &["region", "endpoint", "path_style"], "s3")?;
                let (bucket, prefix) = body.split_once('/').unwrap_or((body, ""));
                Ok(Self::S3 {
                    bucket: non_empty("bucket", "s3", bucket)?,
                    prefix: Some(percent_decode(prefix)?).filter(|p| !p.is_empty()),
                    region: get(&p, "region"),
                    endpoint: get(&p, "endpoint"),
                    path_style: flag(&p, "path_style", "s3")?,
                })
            }
            "gist" => {
                let p = params(query, &["api", "retry", "allow_over_budget"], "gist")?;
                Ok(Self::Gist {
                    id: non_empty("gist id", "gist", body.trim_end_matches('/'))?,
                    api: get(&p, "api"),
                    retry_period: get(&p, "retry").map(|r| parse_duration(&r)).transpose()?,
                    allow_over_budget: flag(&p, "allow_over_budget", "gist")?,
                })
            }
            other => Err(config(format!("unknown store scheme {other:?}; known schemes: {}", scheme_list()))),
        }
    }

    /// The cargo feature of `highlander` this store needs, if any.
    #[must_use]
    pub fn feature(&self) -> Option<&'static str> {
        match self {
            Self::Memory { .. } => None,
            Self::Postgres { .. } => Some("postgres"),
            Self::Etcd { .. } => Some("etcd"),
            Self::DynamoDb { .. } => Some("dynamodb"),
            Self::S3 { .. } => Some("s3"),
            Self::Gist { .. } => Some("gist"),
        }
    }
}

fn scheme_list() -> String {
    SCHEMES.iter().map(|(s, _)| format!("{s}://")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> StoreUrl {
        StoreUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn err(url: &str) -> String {
        StoreUrl::parse(url).expect_err(url).to_string()
    }

    #[test]
    fn every_scheme_parses() {
        let cases: Vec<(&str, StoreUrl)> = vec![
            ("memory://", StoreUrl::Memory { name: String::new() }),
            ("memory://demo", StoreUrl::Memory { name: "demo".into() }),
            (
                "postgres://app@db:5432/leases?table=locks&schema=ops&sslmode=require",
                StoreUrl::Postgres {
                    connection: "postgres://app@db:5432/leases?sslmode=require".into(),
                    table: Some("locks".into()),
                    schema: Some("ops".into()),
                },
            ),
            (
                "postgresql://app@db/leases",
                StoreUrl::Postgres { connection: "postgresql://app@db/leases".into(), table: None, schema: None },
            ),
            (
                "etcd://e1:2379,e2:2379/highlander/leases",
                StoreUrl::Etcd {
                    endpoints: vec!["http://e1:2379".into(), "http://e2:2379".into()],
                    prefix: Some("highlander/leases/".into()),
                    user: None,
                    ca: None,
                    client: None,
                },
            ),
            (
                "etcd://e1:2379?tls=true",
                StoreUrl::Etcd { endpoints: vec!["https://e1:2379".into()], prefix: None, user: None, ca: None, client: None },
            ),
            (
                "etcd://e1:2379/p?ca=/etc/etcd/ca.pem&cert=/etc/etcd/client.pem&key=%2Fetc%2Fetcd%2Fclient-key.pem",
                StoreUrl::Etcd {
                    endpoints: vec!["https://e1:2379".into()],
                    prefix: Some("p/".into()),
                    user: None,
                    ca: Some("/etc/etcd/ca.pem".into()),
                    client: Some(("/etc/etcd/client.pem".into(), "/etc/etcd/client-key.pem".into())),
                },
            ),
            (
                "etcd://ops:p%40ss@e1:2379/x/",
                StoreUrl::Etcd {
                    endpoints: vec!["http://e1:2379".into()],
                    prefix: Some("x/".into()),
                    user: Some(("ops".into(), "p@ss".into())),
                    ca: None,
                    client: None,
                },
            ),
            (
                "dynamodb://leases?region=eu-west-1&endpoint=http://127.0.0.1:8000&key=id",
                StoreUrl::DynamoDb {
                    table: "leases".into(),
                    region: Some("eu-west-1".into()),
                    endpoint: Some("http://127.0.0.1:8000".into()),
                    key_attribute: Some("id".into()),
                },
            ),
            (
                "s3://bucket/highlander/leases/?region=us-east-1&endpoint=http%3A%2F%2F127.0.0.1%3A9000&path_style=true",
                StoreUrl::S3 {
                    bucket: "bucket".into(),
                    prefix: Some("highlander/leases/".into()),
                    region: Some("us-east-1".into()),
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    path_style: true,
                },
            ),
            ("s3://bucket", StoreUrl::S3 { bucket: "bucket".into(), prefix: None, region: None, endpoint: None, path_style: false }),
            (
                "gist://aa5a315d61ae9438b18d?api=http://127.0.0.1:8080&retry=10s",
                StoreUrl::Gist {
                    id: "aa5a315d61ae9438b18d".into(),
                    api: Some("http://127.0.0.1:8080".into()),
                    retry_period: Some(Duration::from_secs(10)),
                    allow_over_budget: false,
                },
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(ok(url), expected, "{url}");
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("localhost:5432", "SCHEME://"),
            ("redis://x", "unknown store scheme \"redis\""),
            ("etcd:///prefix", "at least one host"),
            ("dynamodb://", "needs a table"),
            ("s3://", "needs a bucket"),
            ("gist://", "needs a gist id"),
            ("s3://b?path_style=maybe", "must be true or false"),
            ("gist://abc?retry=soon", "invalid duration"),
            ("dynamodb://t?colour=red", "do not take parameter \"colour\""),
            ("memory://x?y=1", "do not take parameter"),
            ("s3://b/%zz", "malformed %-escape"),
            ("etcd://e1:2379?cert=/c.pem", "cert and key go together"),
        ] {
            let e = err(url);
            assert!(e.contains(expected), "{url}: {e}");
        }
    }

    #[test]
    fn passwords_in_urls_are_never_printed() {
        for url in ["postgres://app:hunter2@db/x?table=t", "etcd://ops:hunter2@e1:2379"] {
            let parsed = ok(url);
            assert!(!format!("{parsed:?}").contains("hunter2"), "{parsed:?}");
        }
        assert!(!err("redis://u:hunter2@h").contains("hunter2"));
    }

    #[test]
    fn durations_take_units() {
        for (text, ms) in [("15s", 15_000), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000), ("1.5s", 1_500), ("7", 7_000)] {
            assert_eq!(parse_duration(text).expect(text), Duration::from_millis(ms), "{text}");
        }
        for bad in ["", "s", "10x", "-1s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
