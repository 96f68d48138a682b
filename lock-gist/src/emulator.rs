//! A small GitHub gist API emulator: `POST /gists`, `GET` / `PATCH /gists/{id}`,
//! `GET /gists/{id}/commits`, with GitHub's JSON shapes, ETags and 304s, its 400 on
//! conditional PATCH, required User-Agent, token checks, rate-limit headers, a
//! switchable secondary limit, revision history and 1 MB truncation.
//!
//! It binds 127.0.0.1 only. Start it in-process with [`Emulator::start`], or on its
//! own with `cargo run -p lock-gist --bin gist-emulator`.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// GitHub truncates file content in API responses above this size.
pub const TRUNCATE_BYTES: usize = 1024 * 1024;
/// The primary rate limit per token and hour.
pub const PRIMARY_LIMIT: u32 = 5000;
const DOCS: &str = "https://docs.github.com/rest/gists/gists";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A classic token with the `gist` scope, or fine-grained with "Gists: write".
    Write,
    /// A fine-grained token without gist write permission: writes get 403.
    ReadOnly,
    /// A classic token without the `gist` scope: writes get 404, as on GitHub.
    NoGistScope,
}

/// One accepted token.
#[derive(Debug, Clone)]
pub struct Token {
    secret: String,
    login: String,
    access: Access,
}

impl Token {
    /// A token `secret` for user `login`.
    pub fn new(secret: impl Into<String>, login: impl Into<String>, access: Access) -> Self {
        Self { secret: secret.into(), login: login.into(), access }
    }
}

#[derive(Debug, Clone)]
struct Commit {
    version: String,
    committed_at: DateTime<Utc>,
    additions: u64,
    deletions: u64,
}

#[derive(Debug, Clone)]
struct Gist {
    owner: String,
    description: Option<String>,
    public: bool,
    files: BTreeMap<String, String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    history: Vec<Commit>,
}

/// Requests the emulator answered, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// `GET /gists/{id}` answered 200.
    pub get: u64,
    /// `GET /gists/{id}` answered 304 Not Modified (free against the primary limit).
    pub not_modified: u64,
    /// `PATCH /gists/{id}` answered 200.
    pub patch: u64,
    /// `POST /gists` answered 201.
    pub post: u64,
    /// Answers of 4xx (errors, limits).
    pub rejected: u64,
}

#[derive(Debug)]
struct RateWindow {
    remaining: u32,
    reset: i64,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    tokens: Vec<Token>,
    gists: BTreeMap<String, Gist>,
    rate: BTreeMap<String, RateWindow>,
    secondary: Option<Option<u64>>,
    counts: RequestCounts,
    next_id: u64,
}

/// Controls a running emulator from tests: limits, counters, direct inspection.
#[derive(Debug, Clone)]
pub struct Control(Arc<Mutex<Inner>>);

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// While on, content-creating requests get GitHub's secondary-limit answer:
    /// 403 with `retry-after: seconds` when given, else without it (as GitHub sometimes does).
    pub fn set_secondary_limit(&self, on: bool, retry_after: Option<u64>) {
        self.lock().secondary = on.then_some(retry_after);
    }

    /// Sets how many primary-limit requests `token` has left this hour.
    pub fn set_remaining(&self, token: &str, remaining: u32) {
        let mut inner = self.lock();
        let window =
            inner.rate.entry(token.to_string()).or_insert(RateWindow { remaining: PRIMARY_LIMIT, reset: Utc::now().timestamp() + 3600 });
        window.remaining = remaining;
    }

    /// The requests answered so far.
    #[must_use]
    pub fn counts(&self) -> RequestCounts {
        self.lock().counts
    }

    /// A file's content, read directly.
    #[must_use]
    pub fn file(&self, gist: &str, name: &str) -> Option<String> {
        self.lock().gists.get(gist).and_then(|g| g.files.get(name).cloned())
    }

    /// How many revisions a gist has.
    #[must_use]
    pub fn revisions(&self, gist: &str) -> usize {
        self.lock().gists.get(gist).map_or(0, |g| g.history.len())
    }

    /// Creates a gist owned by `login` directly, returning its id.
    pub fn create_gist(&self, login: &str, files: &[(&str, &str)]) -> String {
        let mut inner = self.lock();
        let files = files.iter().map(|(n, c)| ((*n).to_string(), (*c).to_string())).collect();
        new_gist(&mut inner, login, None, true, files)
    }
}

/// The emulator's settings.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Tokens it accepts.
    pub tokens: Vec<Token>,
    /// The port on 127.0.0.1 (0: any free port).
    pub port: u16,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self { tokens: vec![Token::new("emulator-token", "highlander", Access::Write)], port: 0 }
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    control: Control,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts an emulator on 127.0.0.1.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let control = Control(Arc::new(Mutex::new(Inner {
            addr,
            tokens: config.tokens,
            gists: BTreeMap::new(),
            rate: BTreeMap::new(),
            secondary: None,
            counts: RequestCounts::default(),
            next_id: 1,
        })));
        let app = Router::new()
            .route("/gists", axum::routing::post(create))
            .route("/gists/{id}", get(read).patch(update))
            .route("/gists/{id}/commits", get(commits))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
            .with_state(control.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { addr, control, stop: Some(stop), task: Some(task) })
    }

    /// The base URL to give a client, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The switchboard.
    #[must_use]
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message, "documentation_url": DOCS, "status": status.as_u16().to_string() }))).into_response()
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn new_gist(inner: &mut Inner, owner: &str, description: Option<String>, public: bool, files: BTreeMap<String, String>) -> String {
    let id =
        sha_hex(format!("gist-{}-{}", inner.next_id, Utc::now().timestamp_nanos_opt().unwrap_or_default()).as_bytes())[..32].to_string();
    inner.next_id += 1;
    let now = Utc::now();
    let additions = files.values().map(|c| c.lines().count() as u64).sum();
    let version = sha_hex(format!("{id}-0").as_bytes())[..40].to_string();
    let gist = Gist {
        owner: owner.into(),
        description,
        public,
        files,
        created_at: now,
        updated_at: now,
        history: vec![Commit { version, committed_at: now, additions, deletions: 0 }],
    };
    inner.gists.insert(id.clone(), gist);
    id
}

fn user(base: &str, login: &str) -> Value {
    let u = format!("{base}/users/{login}");
    json!({
        "login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "avatar_url": format!("{base}/avatars/{login}"), "gravatar_id": "",
        "url": u, "html_url": format!("{base}/{login}"), "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"), "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"), "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"), "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"), "type": "User", "site_admin": false
    })
}

fn gist_json(base: &str, id: &str, g: &Gist) -> Value {
    let url = format!("{base}/gists/{id}");
    let head = g.history.last().map(|c| c.version.clone()).unwrap_or_default();
    let files: serde_json::Map<String, Value> = g
        .files
        .iter()
        .map(|(name, content)| {
            let truncated = content.len() > TRUNCATE_BYTES;
            let mut cut = content.len().min(TRUNCATE_BYTES);
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            let file = json!({
                "filename": name, "type": "application/json", "language": "JSON",
                "raw_url": format!("{base}/raw/{id}/{head}/{name}"), "size": content.len(),
                "truncated": truncated, "content": &content[..cut], "encoding": "utf-8"
            });
            (name.clone(), file)
        })
        .collect();
    let history: Vec<Value> = g.history.iter().rev().map(|c| commit_json(base, id, &g.owner, c)).collect();
    json!({
        "url": url, "forks_url": format!("{url}/forks"), "commits_url": format!("{url}/commits"), "id": id, "node_id": format!("G_{id}"),
        "git_pull_url": format!("{base}/{id}.git"), "git_push_url": format!("{base}/{id}.git"), "html_url": format!("{base}/{}/{id}", g.owner),
        "files": files, "public": g.public, "created_at": time(g.created_at), "updated_at": time(g.updated_at),
        "description": g.description, "comments": 0, "comments_enabled": true, "user": null, "comments_url": format!("{url}/comments"),
        "owner": user(base, &g.owner), "truncated": false, "forks": [], "history": history
    })
}

fn commit_json(base: &str, id: &str, owner: &str, c: &Commit) -> Value {
    json!({
        "url": format!("{base}/gists/{id}/{}", c.version), "version": c.version, "user": user(base, owner),
        "change_status": { "total": c.additions + c.deletions, "additions": c.additions, "deletions": c.deletions },
        "committed_at": time(c.committed_at)
    })
}

/// Who is calling, once the request passed the checks every endpoint makes.
struct Caller {
    token: Option<Token>,
}

/// GitHub's checks before any endpoint: User-Agent, token, primary rate limit.
#[allow(clippy::result_large_err, reason = "an early HTTP answer, built once per request")]
fn admit(inner: &mut Inner, headers: &HeaderMap) -> Result<Caller, Response> {
    let refused = admission(inner, headers);
    if refused.is_err() {
        inner.counts.rejected += 1;
    }
    refused
}

#[allow(clippy::result_large_err, reason = "an early HTTP answer, built once per request")]
fn admission(inner: &mut Inner, headers: &HeaderMap) -> Result<Caller, Response> {
    if headers.get(header::USER_AGENT).is_none_or(|v| v.is_empty()) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
        ));
    }
    let token = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => {
            let secret = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token ")).unwrap_or_default();
            match inner.tokens.iter().find(|t| t.secret == secret) {
                Some(t) => Some(t.clone()),
                None => return Err(error(StatusCode::UNAUTHORIZED, "Bad credentials")),
            }
        }
    };
    let key = token.as_ref().map_or_else(|| "anonymous".to_string(), |t| t.secret.clone());
    let now = Utc::now().timestamp();
    let window = inner.rate.entry(key).or_insert(RateWindow { remaining: PRIMARY_LIMIT, reset: now + 3600 });
    if now >= window.reset {
        *window = RateWindow { remaining: PRIMARY_LIMIT, reset: now + 3600 };
    }
    if window.remaining == 0 {
        let mut r = error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
        );
        rate_headers(&mut r, 0, window.reset);
        return Err(r);
    }
    Ok(Caller { token })
}

fn rate_headers(r: &mut Response, remaining: u32, reset: i64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(PRIMARY_LIMIT));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used", HeaderValue::from(PRIMARY_LIMIT - remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert("x-github-api-version-selected", HeaderValue::from_static("2022-11-28"));
}

/// Charges one request against the caller's primary limit and stamps the headers.
fn charge(inner: &mut Inner, caller: &Caller, mut r: Response, free: bool) -> Response {
    let key = caller.token.as_ref().map_or_else(|| "anonymous".to_string(), |t| t.secret.clone());
    if let Some(window) = inner.rate.get_mut(&key) {
        if !free {
            window.remaining = window.remaining.saturating_sub(1);
        }
        let (remaining, reset) = (window.remaining, window.reset);
        rate_headers(&mut r, remaining, reset);
    }
    if r.status().is_client_error() {
        inner.counts.rejected += 1;
    }
    r
}

fn base(inner: &Inner) -> String {
    format!("http://{}", inner.addr)
}

async fn read(State(control): State<Control>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut inner = control.lock();
    let caller = match admit(&mut inner, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(g) = inner.gists.get(&id).filter(|g| g.public || caller.token.as_ref().is_some_and(|t| t.login == g.owner)) else {
        let r = error(StatusCode::NOT_FOUND, "Not Found");
        return charge(&mut inner, &caller, r, false);
    };
    let body = serde_json::to_vec(&gist_json(&base(&inner), &id, g)).unwrap_or_default();
    let etag = format!("W/\"{}\"", sha_hex(&body));
    let unchanged =
        headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if unchanged {
        inner.counts.not_modified += 1;
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        inner.counts.get += 1;
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    // A 304 does not count against the primary rate limit.
    charge(&mut inner, &caller, r, unchanged)
}

/// What a write needs beyond admission: a token that may write this gist.
#[allow(clippy::result_large_err, reason = "an early HTTP answer, built once per request")]
fn may_write(inner: &Inner, caller: &Caller, owner: Option<&str>) -> Result<(), Response> {
    let Some(token) = &caller.token else { return Err(error(StatusCode::UNAUTHORIZED, "Requires authentication")) };
    match token.access {
        Access::NoGistScope => Err(error(StatusCode::NOT_FOUND, "Not Found")),
        Access::ReadOnly => Err(error(StatusCode::FORBIDDEN, "Resource not accessible by personal access token")),
        Access::Write if owner.is_some_and(|o| o != token.login) => Err(error(StatusCode::NOT_FOUND, "Not Found")),
        Access::Write => {
            if let Some(retry_after) = inner.secondary {
                let mut r = error(
                    StatusCode::FORBIDDEN,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                );
                if let Some(seconds) = retry_after {
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                return Err(r);
            }
            Ok(())
        }
    }
}

fn validation(field: &str, code: &str) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": "Validation Failed", "documentation_url": DOCS, "errors": [ { "resource": "Gist", "field": field, "code": code } ] })))
        .into_response()
}

async fn update(State(control): State<Control>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = control.lock();
    let caller = match admit(&mut inner, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let conditional = [header::IF_MATCH, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE];
    if conditional.iter().any(|h| headers.contains_key(h)) {
        let r = error(
            StatusCode::BAD_REQUEST,
            "Conditional request headers are not allowed in unsafe requests unless supported by the endpoint",
        );
        return charge(&mut inner, &caller, r, false);
    }
    let owner = inner.gists.get(&id).map(|g| g.owner.clone());
    if let Err(r) = may_write(&inner, &caller, owner.as_deref()) {
        return charge(&mut inner, &caller, r, false);
    }
    if owner.is_none() {
        let r = error(StatusCode::NOT_FOUND, "Not Found");
        return charge(&mut inner, &caller, r, false);
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        let r = error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        return charge(&mut inner, &caller, r, false);
    };
    let files = match req.get("files") {
        Some(Value::Object(f)) => f.clone(),
        None if req.contains_key("description") => serde_json::Map::new(),
        _ => return charge(&mut inner, &caller, validation("files", "missing_field"), false),
    };
    let base = base(&inner);
    let Some(g) = inner.gists.get_mut(&id) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let (mut additions, mut deletions) = (0, 0);
    for (name, change) in &files {
        let content = change.get("content").and_then(Value::as_str);
        match content {
            Some("") => return charge(&mut inner, &caller, validation("files", "missing_field"), false),
            Some(content) => {
                deletions += g.files.get(name).map_or(0, |old| old.lines().count() as u64);
                additions += content.lines().count() as u64;
                g.files.insert(name.clone(), content.to_string());
            }
            // A file object without content (or null) deletes the file.
            None => {
                if let Some(old) = g.files.remove(name) {
                    deletions += old.lines().count() as u64;
                }
            }
        }
    }
    if let Some(Value::String(d)) = req.get("description") {
        g.description = Some(d.clone());
    }
    let now = Utc::now();
    g.updated_at = now;
    let version =
        sha_hex(format!("{id}-{}-{}", g.history.len(), now.timestamp_nanos_opt().unwrap_or_default()).as_bytes())[..40].to_string();
    g.history.push(Commit { version, committed_at: now, additions, deletions });
    let out = gist_json(&base, &id, g);
    inner.counts.patch += 1;
    charge(&mut inner, &caller, (StatusCode::OK, Json(out)).into_response(), false)
}

async fn create(State(control): State<Control>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = control.lock();
    let caller = match admit(&mut inner, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = may_write(&inner, &caller, None) {
        return charge(&mut inner, &caller, r, false);
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        let r = error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        return charge(&mut inner, &caller, r, false);
    };
    let mut files = BTreeMap::new();
    if let Some(Value::Object(f)) = req.get("files") {
        for (name, file) in f {
            match file.get("content").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => {
                    files.insert(name.clone(), c.to_string());
                }
                _ => return charge(&mut inner, &caller, validation("files", "missing_field"), false),
            }
        }
    }
    if files.is_empty() {
        return charge(&mut inner, &caller, validation("files", "missing_field"), false);
    }
    let public = matches!(req.get("public"), Some(Value::Bool(true))) || req.get("public").and_then(Value::as_str) == Some("true");
    let description = req.get("description").and_then(Value::as_str).map(str::to_string);
    let login = caller.token.as_ref().map(|t| t.login.clone()).unwrap_or_default();
    let id = new_gist(&mut inner, &login, description, public, files);
    let base = base(&inner);
    let Some(g) = inner.gists.get(&id) else { return error(StatusCode::INTERNAL_SERVER_ERROR, "lost the gist") };
    let out = gist_json(&base, &id, g);
    inner.counts.post += 1;
    let mut r = (StatusCode::CREATED, Json(out)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/gists/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    charge(&mut inner, &caller, r, false)
}

async fn commits(State(control): State<Control>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut inner = control.lock();
    let caller = match admit(&mut inner, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let base = base(&inner);
    let r = match inner.gists.get(&id) {
        Some(g) => (StatusCode::OK, Json(Value::Array(g.history.iter().rev().map(|c| commit_json(&base, &id, &g.owner, c)).collect())))
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    };
    charge(&mut inner, &caller, r, false)
}
