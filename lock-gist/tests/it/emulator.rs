//! The emulator behaves like api.github.com for the gist endpoints, and every
//! response it produces validates against GitHub's published schemas
//! (a copy of the published OpenAPI subset is in tests/it/data/gists-openapi.json).

use crate::support::{self, NO_SCOPE, READ_ONLY, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// GitHub's published OpenAPI subset for gists.
fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/data/gists-openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("the published gist schemas must be at {path}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: turn it into a null alternative.
fn json_schema(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> =
                map.iter().filter(|(k, _)| k.as_str() != "nullable").map(|(k, v)| (k.clone(), json_schema(v))).collect();
            if map.get("nullable") == Some(&Value::Bool(true)) {
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    _ => return json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

struct Checker {
    components: Value,
    base: String,
    http: reqwest::Client,
    seen: BTreeSet<(String, u16)>,
}

impl Checker {
    fn schema_for(&self, route: &str, status: StatusCode) -> Option<Value> {
        let r = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
        let target = match (route, status.as_u16()) {
            (_, 304) => return None,
            ("commits", 200) => json!({ "type": "array", "items": r("gist-commit"), "minItems": 1 }),
            (_, 200 | 201) => r("gist-simple"),
            (_, 422) => r("validation-error"),
            _ => r("basic-error"),
        };
        let mut schema = target;
        schema["components"] = self.components.clone();
        Some(schema)
    }

    /// Sends a request and validates the answer; returns status, headers and body.
    async fn call(
        &mut self,
        route: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if !extra.iter().any(|(k, _)| *k == "no-user-agent") {
            req = req.header("User-Agent", "highlander-emulator-test");
        }
        for (k, v) in extra.iter().filter(|(k, _)| *k != "no-user-agent") {
            req = req.header(*k, *v);
        }
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("emulator answers");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.bytes().await.expect("body");
        let value: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("every body is JSON") };
        match self.schema_for(route, status) {
            None => assert!(bytes.is_empty(), "{method} {path}: a 304 has no body"),
            Some(schema) => {
                let validator = jsonschema::options().should_validate_formats(true).build(&schema).expect("schema compiles");
                let errors: Vec<String> = validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path)).collect();
                assert!(
                    errors.is_empty(),
                    "{method} {path} answered {status} with a body that breaks GitHub's schema:\n{}\n{value:#}",
                    errors.join("\n")
                );
            }
        }
        if status != StatusCode::FORBIDDEN || headers.contains_key("x-ratelimit-limit") {
            assert!(
                headers.contains_key("x-ratelimit-remaining") || status == StatusCode::UNAUTHORIZED,
                "{method} {path}: no rate-limit headers"
            );
        }
        self.seen.insert((format!("{method} {route}"), status.as_u16()));
        (status, headers, value)
    }
}

#[tokio::test]
async fn every_response_matches_githubs_schemas_and_behaviour() {
    let emulator = support::emulator().await;
    let doc = openapi();
    let components = json_schema(&doc["components"]);
    let mut c = Checker { components, base: emulator.url(), http: plain_http_client(), seen: BTreeSet::new() };
    let files =
        json!({ "files": { "lock.json": { "content": "{\"holderIdentity\":\"stalin\"}" } }, "public": false, "description": "leases" });

    // Every endpoint's checks before anything else.
    let (s, _, _) = c.call("gists", Method::POST, "/gists", Some(TOKEN), &[("no-user-agent", "")], Some(files.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "User-Agent is required");
    let (s, _, v) = c.call("gists", Method::POST, "/gists", Some("ghp_bad"), &[], Some(files.clone())).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::UNAUTHORIZED, Some("Bad credentials")));
    let (s, _, _) = c.call("gists", Method::POST, "/gists", Some(TOKEN), &[], Some(json!({ "files": {} }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Create, then read with ETags.
    let (s, h, v) = c.call("gists", Method::POST, "/gists", Some(TOKEN), &[], Some(files)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(h.contains_key("location"));
    let id = v["id"].as_str().expect("id").to_string();
    let path = format!("/gists/{id}");
    let (s, h, v) = c.call("gist", Method::GET, &path, Some(TOKEN), &[], None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["files"]["lock.json"]["content"], "{\"holderIdentity\":\"stalin\"}");
    let etag = h.get("etag").and_then(|e| e.to_str().ok()).expect("an ETag").to_string();
    let remaining = |h: &reqwest::header::HeaderMap| {
        h.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok()).expect("remaining")
    };
    let before = remaining(&h);
    let (s, h, _) = c.call("gist", Method::GET, &path, Some(TOKEN), &[("If-None-Match", &etag)], None).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    assert_eq!(remaining(&h), before, "a 304 is free against the primary limit");

    // Writes: no conditional headers, tokens that may not write, then real edits.
    let edit = |content: &str| json!({ "files": { "lock.json": { "content": content } } });
    let (s, _, v) = c.call("gist", Method::PATCH, &path, Some(TOKEN), &[("If-Match", &etag)], Some(edit("x"))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().is_some_and(|m| m.starts_with("Conditional request headers are not allowed")), "{v}");
    let (s, _, _) = c.call("gist", Method::PATCH, &path, Some(READ_ONLY), &[], Some(edit("x"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a fine-grained token without Gists: write");
    let (s, _, _) = c.call("gist", Method::PATCH, &path, Some(NO_SCOPE), &[], Some(edit("x"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a classic token without the gist scope");
    let (s, _, v) = c.call("gist", Method::PATCH, &path, Some(TOKEN), &[], Some(edit("{\"holderIdentity\":\"napoleon\"}"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["files"]["lock.json"]["content"], "{\"holderIdentity\":\"napoleon\"}");
    let (s, _, _) = c.call("gist", Method::GET, &path, Some(TOKEN), &[("If-None-Match", &etag)], None).await;
    assert_eq!(s, StatusCode::OK, "a changed gist is not a 304");
    let (s, _, v) = c
        .call(
            "gist",
            Method::PATCH,
            &path,
            Some(TOKEN),
            &[],
            Some(json!({ "files": { "extra.json": { "content": "1" }, "lock.json": null } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["files"].get("lock.json").is_none() && v["files"].get("extra.json").is_some(), "null deletes a file: {v}");

    // 1 MB truncation.
    let big = "z".repeat(lock_gist::emulator::TRUNCATE_BYTES + 100);
    let (s, _, _) =
        c.call("gist", Method::PATCH, &path, Some(TOKEN), &[], Some(json!({ "files": { "big.txt": { "content": big } } }))).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, v) = c.call("gist", Method::GET, &path, Some(TOKEN), &[], None).await;
    assert_eq!(v["files"]["big.txt"]["truncated"], true);
    assert_eq!(v["files"]["big.txt"]["content"].as_str().map(str::len), Some(lock_gist::emulator::TRUNCATE_BYTES));
    assert_eq!(v["files"]["big.txt"]["size"], big.len());

    // Revision history, newest first.
    let (s, _, v) = c.call("commits", Method::GET, &format!("{path}/commits"), Some(TOKEN), &[], None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().map(Vec::len), Some(4), "create + 3 edits");
    assert!(v[0]["committed_at"].as_str() >= v[3]["committed_at"].as_str());
    assert_eq!(emulator.control().revisions(&id), 4);

    // Unknown gists, the secondary limit, the primary limit.
    let (s, _, _) = c.call("gist", Method::GET, "/gists/ffffffffffffffff", Some(TOKEN), &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = c.call("commits", Method::GET, "/gists/ffffffffffffffff/commits", Some(TOKEN), &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    emulator.control().set_secondary_limit(true, Some(7));
    let (s, h, v) = c.call("gist", Method::PATCH, &path, Some(TOKEN), &[], Some(edit("y"))).await;
    assert_eq!((s, h.get("retry-after").and_then(|v| v.to_str().ok())), (StatusCode::FORBIDDEN, Some("7")));
    assert!(v["message"].as_str().is_some_and(|m| m.contains("secondary rate limit")));
    emulator.control().set_secondary_limit(false, None);
    emulator.control().set_remaining(TOKEN, 0);
    let (s, h, _) = c.call("gist", Method::GET, &path, Some(TOKEN), &[], None).await;
    assert_eq!((s, remaining(&h)), (StatusCode::FORBIDDEN, 0));

    let statuses: BTreeSet<u16> = c.seen.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, BTreeSet::from([200, 201, 304, 400, 401, 403, 404, 422]), "every kind of answer was validated: {:?}", c.seen);
}

/// A client for the emulator's plain HTTP: reqwest wants a TLS configuration even then, and
/// lock-gist's reqwest brings no default crypto provider (the store passes its own).
fn plain_http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring's protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("an HTTP client")
}
