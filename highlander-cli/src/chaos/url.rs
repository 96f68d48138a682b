//! Rewriting a store URL so every connection goes through a proxy: the hosts of the
//! authority (Postgres, etcd, …) or the `endpoint=` / `api=` of the HTTP stores.

use highlander::{StoreUrl, backend::Address, url::host_port};

/// Where a store URL connects: the `host:port`s, and how to put proxies in their place.
pub(crate) struct Route {
    url: String,
    kind: RouteKind,
    /// The `host:port`s, in order.
    pub(crate) targets: Vec<String>,
}

enum RouteKind {
    /// The hosts of the authority.
    Authority { start: usize, end: usize },
    /// The host of an HTTP URL in a parameter.
    Param { start: usize, end: usize },
}

/// The `--store` help of chaos: each backend compiled in, with what chaos needs of its URL.
pub(crate) fn store_help() -> String {
    let kinds: Vec<String> = highlander::backends()
        .into_iter()
        .filter_map(|b| {
            let scheme = b.schemes().first()?;
            match b.address() {
                Address::Hosts { .. } => Some(format!("{scheme}://")),
                Address::Param { name, .. } => Some(format!("{scheme}:// with {name}=")),
                Address::Local => Some(format!("{scheme}:// without network faults")),
                _ => None,
            }
        })
        .collect();
    format!("The store URL ({}). Also read from HIGHLANDER_STORE, which keeps it out of argv.", kinds.join(", "))
}

impl Route {
    /// Finds the network addresses of `url` (`None`: a store with no network between the
    /// candidates and it, a directory), or says why chaos cannot put itself in between.
    /// Where to look is the backend's to say ([`Address`]).
    pub(crate) fn of(url: &str) -> Result<Option<Self>, String> {
        let parsed = StoreUrl::parse(url).map_err(|e| e.to_string())?;
        let scheme = parsed.scheme().to_string();
        let after_scheme = url.find("://").map(|i| i + 3).ok_or("not a URL")?;
        match highlander::backend(&parsed).map_err(|e| e.to_string())?.address() {
            Address::Local => Ok(None),
            Address::Hosts { default_port } => {
                let rest = &url[after_scheme..];
                let end = after_scheme + rest.find(['/', '?']).unwrap_or(rest.len());
                let start = url[after_scheme..end].rfind('@').map_or(after_scheme, |i| after_scheme + i + 1);
                let mut targets = Vec::new();
                for (i, host) in parsed.hosts().iter().enumerate() {
                    let (name, port) = host_port(&scheme, i, host, default_port).map_err(|e| e.to_string())?;
                    targets.push(format!("{name}:{port}"));
                }
                Ok(Some(Self { url: url.to_string(), kind: RouteKind::Authority { start, end }, targets }))
            }
            Address::Param { name: key, bare_port } => {
                let Some(at) = url.find(&format!("?{key}=")).or_else(|| url.find(&format!("&{key}="))) else {
                    return Err(format!(
                        "chaos reaches the store through a proxy of its own and needs the {scheme}:// URL's {key}= (the store's own service cannot be stood in front of)"
                    ));
                };
                let value_start = at + 2 + key.len();
                let value_end = url[value_start..].find('&').map_or(url.len(), |i| value_start + i);
                let value = &url[value_start..value_end];
                // The store's own parameter rules (an empty value is an error) before the text is read.
                parsed.params().take(key).map_err(|e| e.to_string())?;
                let (host_start, port) = match (value.find("://"), bare_port) {
                    (Some(scheme_end), _) => (value_start + scheme_end + 3, if value.starts_with("https") { 443 } else { 80 }),
                    (None, Some(port)) => (value_start, port),
                    (None, None) => return Err(format!("{scheme}:// URL's {key}= is not an http:// or https:// URL")),
                };
                let host_end = url[host_start..value_end].find(['/', '?']).map_or(value_end, |i| host_start + i);
                let host = &url[host_start..host_end];
                let (name, port) = host_port(&scheme, 0, host, port).map_err(|e| e.to_string())?;
                Ok(Some(Self {
                    url: url.to_string(),
                    kind: RouteKind::Param { start: host_start, end: host_end },
                    targets: vec![format!("{name}:{port}")],
                }))
            }
            Address::InProcess => Err(format!(
                "{scheme}:// lives in one process and cannot be shared by candidates, which chaos runs as processes of their own"
            )),
            _ => Err(format!("the {scheme} backend does not say where its store is, so chaos cannot put a proxy in between")),
        }
    }

    /// The URL with each target replaced by the address at the same place in `proxies`.
    pub(crate) fn through(&self, proxies: &[std::net::SocketAddr]) -> String {
        let (start, end) = match self.kind {
            RouteKind::Authority { start, end } | RouteKind::Param { start, end } => (start, end),
        };
        let hosts: Vec<String> = proxies.iter().map(ToString::to_string).collect();
        format!("{}{}{}", &self.url[..start], hosts.join(","), &self.url[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_empty_endpoint_is_named_not_searched_past() {
        for url in ["dynamodb://t?endpoint=", "gist://g?allow_over_budget=true&api=", "spanner://p/i/d?emulator=&table=x"] {
            let e = Route::of(url).map(drop).expect_err(url);
            assert!(e.contains("is empty"), "{url}: {e}");
        }
    }

    #[test]
    fn hosts_and_endpoints_are_replaced_by_proxies() {
        let route = |u: &str| Route::of(u).expect("route").expect("a network store");
        let r = route("postgres://app:pw@db1:6543,db2/ops?table=t");
        assert_eq!(r.targets, ["db1:6543", "db2:5432"]);
        assert_eq!(r.through(&[addr(1), addr(2)]), "postgres://app:pw@127.0.0.1:1,127.0.0.1:2/ops?table=t");
        let r = route("etcd://10.0.0.1:2379/team");
        assert_eq!(r.through(&[addr(9)]), "etcd://127.0.0.1:9/team");
        let r = route("dynamodb://t?region=us-east-1&endpoint=http://127.0.0.1:5000");
        assert_eq!(r.targets, ["127.0.0.1:5000"]);
        assert_eq!(r.through(&[addr(7)]), "dynamodb://t?region=us-east-1&endpoint=http://127.0.0.1:7");
        let r = route("gist://abc?api=http://127.0.0.1:8080/api&allow_over_budget=true");
        assert_eq!(r.through(&[addr(3)]), "gist://abc?api=http://127.0.0.1:3/api&allow_over_budget=true");
        let r = route("spanner://p/i/d?emulator=127.0.0.1:9010&table=t");
        assert_eq!(r.through(&[addr(4)]), "spanner://p/i/d?emulator=127.0.0.1:4&table=t");
        assert!(Route::of("spanner://p/i/d").is_err(), "Cloud Spanner itself: chaos cannot stand in front of it");
        assert!(Route::of("memory://x").is_err());
        assert!(Route::of("file:///var/lib/leases").expect("a directory").is_none(), "no network: no proxy");
        assert!(Route::of("s3://bucket").is_err(), "no endpoint: AWS itself, which chaos cannot stand in front of");
    }
}
