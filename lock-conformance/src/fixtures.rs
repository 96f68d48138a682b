//! Store fixtures: an endpoint from the environment, else a container from a pinned image.
//!
//! Each backend's fixture resolves its store in this order:
//! 1. an already running endpoint named by `LOCK_TEST_<STORE>_…` (see each function);
//! 2. a container started with testcontainers from the official image pinned here,
//!    or from `LOCK_TEST_<STORE>_IMAGE` (e.g. the locally built images of
//!    `scripts/offline-images` where no registry is reachable).
//!
//! Ports are published on 127.0.0.1 only. One container per store per test binary:
//! it is started on first use and removed by id when the test process exits (a small
//! watcher process waits for the test process and then runs `docker rm -f`).
//! A fixture that cannot find or start its store returns an error: checks fail
//! loudly, they never skip.

use std::{
    collections::HashMap,
    fmt,
    net::TcpListener,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};
use testcontainers::{
    ContainerAsync, GenericImage, ImageExt,
    bollard::models::PortBinding,
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};
use tokio::sync::OnceCell;

use crate::{Harness, SUITE_TIMING, harness::Connect};
use lock_core::{Backend, OpenOptions};

/// Waits until the store a URL names can be used, creating what it needs (a table, a
/// bucket) through its backend: a container's log line says the server started, not
/// that it is ready. Gives up after a minute, with the store's last error.
pub async fn ready(backend: &'static dyn Backend, url: &str) -> Result<(), FixtureError> {
    let parsed = lock_core::StoreUrl::parse(url).map_err(|e| FixtureError(e.to_string()))?;
    let options = OpenOptions::new(SUITE_TIMING);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match backend.create(&parsed, &options).await {
            Ok(()) => return Ok(()),
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => return Err(FixtureError(format!("the store never became ready: {e}"))),
        }
    }
}

/// The conformance harness of a fixture's store: waits for it, then opens it by URL
/// through its backend. Panics with the reason if there is no store: a check that
/// cannot find its store fails loudly, it never skips.
pub async fn harness(backend: &'static dyn Backend, url: Result<String, FixtureError>) -> Harness<Connect> {
    let url = url.unwrap_or_else(|e| panic!("no {} store to test against: {e}", backend.schemes()[0]));
    ready(backend, &url).await.unwrap_or_else(|e| panic!("{}: {e}", backend.schemes()[0]));
    Harness::for_url(backend, &url, SUITE_TIMING).unwrap_or_else(|e| panic!("the fixture's URL is not valid: {e}"))
}

/// Why a fixture could not provide its store.
#[derive(Debug, Clone)]
pub struct FixtureError(pub String);

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

/// What to run for one store.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The store's name in environment variables (`POSTGRES` → `LOCK_TEST_POSTGRES_IMAGE`).
    pub store: &'static str,
    /// The pinned official image, `name:tag`.
    pub default_image: &'static str,
    /// The port the store listens on inside the container.
    pub port: u16,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The command, if the image's default is not right.
    pub cmd: Vec<String>,
    /// A log line that says the store is up.
    pub ready_message: &'static str,
    /// Run on the host's network namespace instead of publishing `port`: for
    /// multi-member clusters whose members listen on 127.0.0.1 themselves.
    pub host_network: bool,
}

impl ContainerSpec {
    /// The image to run: `LOCK_TEST_<STORE>_IMAGE` or the pinned default.
    #[must_use]
    pub fn image(&self) -> String {
        std::env::var(format!("LOCK_TEST_{}_IMAGE", self.store))
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.default_image.to_string())
    }
}

/// A container started for this test process.
pub struct RunningContainer {
    id: String,
    image: String,
    host_port: u16,
    container: ContainerAsync<GenericImage>,
}

impl fmt::Debug for RunningContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningContainer").field("id", &self.id).field("image", &self.image).field("host_port", &self.host_port).finish()
    }
}

impl RunningContainer {
    /// The container's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The image it runs.
    #[must_use]
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The port on 127.0.0.1 that reaches the store.
    #[must_use]
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// Stops the container (the store goes away; its data stays).
    pub async fn stop(self: &Arc<Self>) -> Result<(), FixtureError> {
        let me = self.clone();
        on_fixture_runtime(async move { me.container.stop().await.map_err(|e| FixtureError(format!("stopping container {}: {e}", me.id))) })
            .await
    }

    /// Starts the stopped container again, on the same host port.
    pub async fn start(self: &Arc<Self>) -> Result<(), FixtureError> {
        let me = self.clone();
        on_fixture_runtime(
            async move { me.container.start().await.map_err(|e| FixtureError(format!("starting container {}: {e}", me.id))) },
        )
        .await
    }
}

/// Containers live on a runtime of their own, so they outlive each test's runtime.
fn fixture_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lock-fixtures")
            .enable_all()
            .build()
            .expect("a tokio runtime for the fixtures")
    })
}

async fn on_fixture_runtime<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, FixtureError>> + Send + 'static,
) -> Result<T, FixtureError> {
    fixture_runtime().spawn(fut).await.map_err(|e| FixtureError(format!("fixture task failed: {e}")))?
}

/// A port on 127.0.0.1 that was free a moment ago, for a server a test starts.
pub fn free_loopback_port() -> Result<u16, FixtureError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| FixtureError(format!("no free port on 127.0.0.1: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| FixtureError(e.to_string()))
}

/// Removes the container by id once this process has exited, however it exits.
fn reap_when_done(id: &str) -> Result<(), FixtureError> {
    on_exit("container", &format!("docker rm -f -v {id} >/dev/null 2>&1"))
}

/// Runs a shell `script` once this process has exited, however it exits: the script
/// waits on a pipe whose only writer is this process (close-on-exec, so no other child
/// holds it), and end of file means this process is gone — no polling of a pid that
/// may be reused.
fn on_exit(what: &str, script: &str) -> Result<(), FixtureError> {
    let mut watcher = std::process::Command::new("sh")
        .args(["-c", &format!("read _; {script}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| FixtureError(format!("cannot start the {what} reaper: {e}")))?;
    // Held open until this process exits.
    static WATCHED: Mutex<Vec<std::process::ChildStdin>> = Mutex::new(Vec::new());
    if let Some(pipe) = watcher.stdin.take() {
        WATCHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pipe);
    }
    Ok(())
}

async fn start(spec: ContainerSpec) -> Result<RunningContainer, FixtureError> {
    let image = spec.image();
    let (name, tag) = image.rsplit_once(':').ok_or_else(|| FixtureError(format!("image {image:?} has no tag; images are pinned")))?;
    let host_port = free_loopback_port()?;
    let container_port = format!("{}/tcp", spec.port);
    let host_network = spec.host_network;
    let image_ref = GenericImage::new(name, tag).with_wait_for(WaitFor::message_on_either_std(spec.ready_message));
    let image_ref = if host_network { image_ref } else { image_ref.with_exposed_port(spec.port.tcp()) };
    let mut request = image_ref
        .with_startup_timeout(Duration::from_secs(120))
        .with_label("org.highlander.fixture", spec.store)
        .with_host_config_modifier(move |host| {
            host.publish_all_ports = Some(false);
            if host_network {
                // The members bind 127.0.0.1 themselves; nothing is published.
                host.network_mode = Some("host".into());
                host.port_bindings = None;
            } else {
                // Publish on loopback only; testcontainers would bind every interface.
                let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host_port.to_string()) };
                host.port_bindings = Some(HashMap::from([(container_port.clone(), Some(vec![binding]))]));
            }
        });
    for (k, v) in &spec.env {
        request = request.with_env_var(k, v);
    }
    if !spec.cmd.is_empty() {
        request = request.with_cmd(spec.cmd.clone());
    }
    let container = request.start().await.map_err(|e| {
        FixtureError(format!(
            "cannot start a {} container from image {image}: {e}. Is Docker running (scripts/docker-up)? \
             Without a registry, build local images with scripts/offline-images and set LOCK_TEST_{}_IMAGE.",
            spec.store, spec.store
        ))
    })?;
    let id = container.id().to_string();
    reap_when_done(&id)?;
    if host_network {
        return Ok(RunningContainer { id, image, host_port: spec.port, container });
    }
    let ports = container.ports().await.map_err(|e| FixtureError(format!("cannot read the ports of container {id}: {e}")))?;
    let exposed = format!("{ports:?}");
    if exposed.contains("0.0.0.0") || exposed.contains("::") {
        return Err(FixtureError(format!("container {id} published a port beyond 127.0.0.1: {exposed}")));
    }
    Ok(RunningContainer { id, image, host_port, container })
}

/// The container for `spec.store`, started on first use and shared by every test of this process.
pub async fn container(spec: ContainerSpec) -> Result<Arc<RunningContainer>, FixtureError> {
    type Cell = Arc<OnceCell<Arc<RunningContainer>>>;
    static CELLS: OnceLock<Mutex<HashMap<&'static str, Cell>>> = OnceLock::new();
    let cell: Cell = {
        let mut cells = CELLS.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cells.entry(spec.store).or_default().clone()
    };
    cell.get_or_try_init(|| async move { on_fixture_runtime(async move { start(spec).await.map(Arc::new) }).await }).await.cloned()
}

/// A container from `spec` of the caller's own, not shared with other tests.
pub async fn own_container(spec: ContainerSpec) -> Result<Arc<RunningContainer>, FixtureError> {
    on_fixture_runtime(async move { start(spec).await.map(Arc::new) }).await
}

/// A fresh random secret for a container's password (never printed).
#[must_use]
pub fn random_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Reads an optional, non-empty environment variable.
#[must_use]
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Postgres: `LOCK_TEST_POSTGRES_URL` (e.g. `postgres://user:pass@127.0.0.1:5432/db`), else a
/// container from `postgres:15.10` (or `LOCK_TEST_POSTGRES_IMAGE`). Returns a connection URL.
pub async fn postgres_url() -> Result<String, FixtureError> {
    if let Some(url) = env("LOCK_TEST_POSTGRES_URL") {
        return Ok(url);
    }
    postgres_container_url().await
}

/// The URL of the Postgres container (started if needed), whatever the environment says.
pub async fn postgres_container_url() -> Result<String, FixtureError> {
    let c = postgres_container().await?;
    Ok(format!("postgres://highlander:{}@127.0.0.1:{}/highlander", postgres_password(), c.host_port()))
}

fn postgres_password() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(random_secret)
}

/// The Postgres container shared by this process's tests (started if needed).
pub async fn postgres_container() -> Result<Arc<RunningContainer>, FixtureError> {
    container(postgres_spec()).await
}

/// A Postgres container of the caller's own and its URL, for a test that stops and
/// starts the store (the shared one serves tests running beside it).
pub async fn postgres_restartable() -> Result<(String, Arc<RunningContainer>), FixtureError> {
    let c = own_container(postgres_spec()).await?;
    Ok((format!("postgres://highlander:{}@127.0.0.1:{}/highlander", postgres_password(), c.host_port()), c))
}

fn postgres_spec() -> ContainerSpec {
    ContainerSpec {
        store: "POSTGRES",
        default_image: "postgres:15.10",
        port: 5432,
        env: vec![
            ("POSTGRES_USER".into(), "highlander".into()),
            ("POSTGRES_PASSWORD".into(), postgres_password().into()),
            ("POSTGRES_DB".into(), "highlander".into()),
        ],
        cmd: vec![],
        ready_message: "database system is ready to accept connections",
        host_network: false,
    }
}

/// The pinned official etcd image.
pub const ETCD_IMAGE: &str = "quay.io/coreos/etcd:v3.5.17";

/// etcd: `LOCK_TEST_ETCD_ENDPOINTS` (comma-separated `http://host:port`), else a container
/// from `quay.io/coreos/etcd:v3.5.17` (or `LOCK_TEST_ETCD_IMAGE`). Returns the endpoints.
pub async fn etcd_endpoints() -> Result<Vec<String>, FixtureError> {
    if let Some(list) = env("LOCK_TEST_ETCD_ENDPOINTS") {
        return Ok(list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    }
    etcd_container_endpoints().await
}

/// etcd as a store URL (`etcd://HOST:PORT,…/conformance`), from the environment or a container.
pub async fn etcd_url() -> Result<String, FixtureError> {
    let endpoints = etcd_endpoints().await?;
    Ok(etcd_url_of(&endpoints))
}

/// The store URL of these `http://` endpoints.
#[must_use]
pub fn etcd_url_of(endpoints: &[String]) -> String {
    let hosts: Vec<&str> = endpoints.iter().map(|e| e.trim_start_matches("http://")).collect();
    format!("etcd://{}/conformance", hosts.join(","))
}

/// The endpoints of the etcd container (started if needed), whatever the environment says.
pub async fn etcd_container_endpoints() -> Result<Vec<String>, FixtureError> {
    let c = etcd_container().await?;
    Ok(vec![format!("http://127.0.0.1:{}", c.host_port())])
}

/// The etcd container shared by this process's tests (started if needed).
pub async fn etcd_container() -> Result<Arc<RunningContainer>, FixtureError> {
    container(etcd_spec()).await
}

/// An etcd container of the caller's own and its store URL, for a test that stops and
/// starts the store (the shared one serves tests running beside it).
pub async fn etcd_restartable() -> Result<(String, Arc<RunningContainer>), FixtureError> {
    let c = own_container(etcd_spec()).await?;
    Ok((etcd_url_of(&[format!("http://127.0.0.1:{}", c.host_port())]), c))
}

fn etcd_spec() -> ContainerSpec {
    ContainerSpec {
        store: "ETCD",
        default_image: ETCD_IMAGE,
        port: 2379,
        env: vec![],
        cmd: [
            "/usr/local/bin/etcd",
            "--name=highlander",
            "--data-dir=/var/lib/etcd",
            "--listen-client-urls=http://0.0.0.0:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=highlander=http://127.0.0.1:2380",
        ]
        .map(String::from)
        .to_vec(),
        ready_message: "ready to serve client requests",
        host_network: false,
    }
}

/// A three-member etcd cluster (one container per member, each listening on
/// 127.0.0.1 only), for tests that take members away. Started once per process.
pub async fn etcd_cluster() -> Result<Vec<Arc<RunningContainer>>, FixtureError> {
    static CLUSTER: OnceCell<Vec<Arc<RunningContainer>>> = OnceCell::const_new();
    CLUSTER.get_or_try_init(start_etcd_cluster).await.cloned()
}

async fn start_etcd_cluster() -> Result<Vec<Arc<RunningContainer>>, FixtureError> {
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push((free_loopback_port()?, free_loopback_port()?));
    }
    let initial = ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect::<Vec<_>>().join(",");
    let token = format!("highlander-{}", random_secret());
    // Members become ready only together (they need quorum): start them all at once.
    let starting: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| {
            let spec = ContainerSpec {
                store: "ETCD",
                default_image: ETCD_IMAGE,
                port: *client,
                env: vec![],
                cmd: vec![
                    "/usr/local/bin/etcd".into(),
                    format!("--name=m{i}"),
                    "--data-dir=/var/lib/etcd".into(),
                    format!("--listen-client-urls=http://127.0.0.1:{client}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-cluster={initial}"),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".into(),
                ],
                ready_message: "ready to serve client requests",
                host_network: true,
            };
            fixture_runtime().spawn(async move { start(spec).await.map(Arc::new) })
        })
        .collect();
    let mut members = Vec::new();
    for member in starting {
        members.push(member.await.map_err(|e| FixtureError(format!("fixture task failed: {e}")))??);
    }
    Ok(members)
}

/// An S3 or DynamoDB endpoint and the credentials it accepts.
#[derive(Clone)]
pub struct AwsEndpoint {
    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (never printed).
    pub secret_access_key: String,
    /// The region to sign for.
    pub region: String,
}

impl fmt::Debug for AwsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsEndpoint")
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The pinned official DynamoDB Local image.
pub const DYNAMODB_IMAGE: &str = "amazon/dynamodb-local:2.5.4";
/// The pinned official MinIO image.
pub const MINIO_IMAGE: &str = "minio/minio:RELEASE.2025-04-22T22-12-26Z";

/// The secret the containers accept: the environment's (what the AWS chain will send), else a fresh one.
fn aws_secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| env("AWS_SECRET_ACCESS_KEY").unwrap_or_else(random_secret))
}

fn aws_access_key() -> String {
    env("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "highlander".into())
}

/// Endpoint from `LOCK_TEST_<STORE>_ENDPOINT` (credentials from the standard
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_REGION`, defaulting to an emulator's).
fn aws_endpoint_from_env(store: &str) -> Option<AwsEndpoint> {
    env(&format!("LOCK_TEST_{store}_ENDPOINT")).map(|url| AwsEndpoint {
        url,
        access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "highlander".into()),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "highlander-secret".into()),
        region: env("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
    })
}

/// moto serves both APIs; the official images each serve one.
fn aws_spec(store: &'static str, default_image: &'static str) -> ContainerSpec {
    let probe = ContainerSpec { store, default_image, port: 0, env: vec![], cmd: vec![], ready_message: "", host_network: false };
    let image = probe.image();
    if image.contains("moto") {
        ContainerSpec { port: 5000, ready_message: "Running on", ..probe }
    } else if image.contains("dynamodb-local") {
        ContainerSpec {
            port: 8000,
            cmd: ["-jar", "DynamoDBLocal.jar", "-inMemory", "-sharedDb"].map(String::from).to_vec(),
            ready_message: "Initializing DynamoDB Local",
            ..probe
        }
    } else {
        ContainerSpec {
            port: 9000,
            env: vec![("MINIO_ROOT_USER".into(), aws_access_key()), ("MINIO_ROOT_PASSWORD".into(), aws_secret().into())],
            cmd: ["server", "/data"].map(String::from).to_vec(),
            ready_message: "API:",
            ..probe
        }
    }
}

async fn aws_endpoint(store: &'static str, default_image: &'static str) -> Result<AwsEndpoint, FixtureError> {
    if let Some(endpoint) = aws_endpoint_from_env(store) {
        return Ok(endpoint);
    }
    let c = container(aws_spec(store, default_image)).await?;
    Ok(AwsEndpoint {
        url: format!("http://127.0.0.1:{}", c.host_port()),
        access_key_id: aws_access_key(),
        secret_access_key: aws_secret().into(),
        region: "us-east-1".into(),
    })
}

/// The AWS backends are opened by URL, so their credentials come from the AWS chain:
/// the environment must name them (any values for moto; scripts/test sets them).
fn aws_credentials_in_env() -> Result<(), FixtureError> {
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"] {
        if env(var).is_none() {
            return Err(FixtureError(format!(
                "{var} is not set: the AWS backends' tests use the AWS credential chain with test credentials and no instance metadata                  (export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_EC2_METADATA_DISABLED=true, as scripts/test does)"
            )));
        }
    }
    Ok(())
}

/// DynamoDB as a store URL (`dynamodb://highlander-leases?endpoint=…&region=…`).
pub async fn dynamodb_url() -> Result<String, FixtureError> {
    aws_credentials_in_env()?;
    let e = dynamodb_endpoint().await?;
    Ok(format!("dynamodb://highlander-leases?endpoint={}&region={}", e.url, e.region))
}

/// S3 as a store URL (`s3://highlander-leases/conformance/?endpoint=…&region=…&path_style=true`).
pub async fn s3_url() -> Result<String, FixtureError> {
    aws_credentials_in_env()?;
    let e = s3_endpoint().await?;
    Ok(format!("s3://highlander-leases/conformance/?endpoint={}&region={}&path_style=true", e.url, e.region))
}

/// DynamoDB: `LOCK_TEST_DYNAMODB_ENDPOINT`, else a container from
/// `amazon/dynamodb-local` (or `LOCK_TEST_DYNAMODB_IMAGE`, e.g. the local moto image).
pub async fn dynamodb_endpoint() -> Result<AwsEndpoint, FixtureError> {
    aws_endpoint("DYNAMODB", DYNAMODB_IMAGE).await
}

/// S3: `LOCK_TEST_S3_ENDPOINT`, else a container from `minio/minio` (or
/// `LOCK_TEST_S3_IMAGE`, e.g. the local moto image).
pub async fn s3_endpoint() -> Result<AwsEndpoint, FixtureError> {
    aws_endpoint("S3", MINIO_IMAGE).await
}

/// PgBouncer (Debian's package) in front of the fixture's Postgres, started as a plain
/// process on 127.0.0.1 with stock settings but `pool_mode` (`transaction` or
/// `session`), `auth_type = trust` and no `ignore_startup_parameters`; stopped by its
/// pid when this process exits. Returns a connection URL through the pooler, and the
/// server's own `host:port` (for `listen=`).
pub async fn pgbouncer_url(pool_mode: &'static str) -> Result<(String, String), FixtureError> {
    type Cell = Arc<OnceCell<(String, String)>>;
    static CELLS: OnceLock<Mutex<HashMap<&'static str, Cell>>> = OnceLock::new();
    let cell: Cell = {
        let mut cells = CELLS.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cells.entry(pool_mode).or_default().clone()
    };
    cell.get_or_try_init(|| start_pgbouncer(pool_mode)).await.cloned()
}

async fn start_pgbouncer(pool_mode: &'static str) -> Result<(String, String), FixtureError> {
    let server = postgres_url().await?;
    let parsed = lock_core::StoreUrl::parse(&server).map_err(|e| FixtureError(e.to_string()))?;
    let user = parsed.user().unwrap_or("postgres").to_string();
    let password = parsed.password().unwrap_or_default().to_string();
    let host = parsed.hosts().first().cloned().ok_or_else(|| FixtureError("the Postgres URL has no host".into()))?;
    let (server_host, server_port) = lock_core::url::host_port("postgres", 0, &host, 5432).map_err(|e| FixtureError(e.to_string()))?;
    let db = if parsed.path().is_empty() { user.clone() } else { parsed.path().to_string() };
    let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| FixtureError("pgbouncer is not installed (apt-get install pgbouncer; scripts/setup does)".into()))?;
    let dir = server_dir(&format!("pgbouncer-{pool_mode}"))?;
    let port = free_loopback_port()?;
    std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"{password}\"\n")).map_err(|e| FixtureError(e.to_string()))?;
    // In session mode a server connection is held per client connection: room for the
    // suite's many clients (each store's pool plus its LISTEN connection).
    let pool = if pool_mode == "session" { "default_pool_size = 60\n" } else { "" };
    let config = format!(
        "[databases]\n* = host={server_host} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = {pool_mode}\n{pool}logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("pgbouncer.ini"), config).map_err(|e| FixtureError(e.to_string()))?;
    // PgBouncer refuses to run as root: drop to the postgres user, which owns its directory.
    let mut command = std::process::Command::new(binary);
    if nix_is_root() {
        let _ = std::process::Command::new("chown").args(["-R", "postgres", &dir.display().to_string()]).status();
        command.args(["-u", "postgres"]);
    }
    command.arg(dir.join("pgbouncer.ini"));
    spawn_server("pgbouncer", command, &dir)?;
    wait_listening("pgbouncer", port, &dir, "pgbouncer.log").await?;
    let auth = if password.is_empty() { user.clone() } else { format!("{user}:{password}") };
    Ok((format!("postgres://{auth}@127.0.0.1:{port}/{db}"), format!("{server_host}:{server_port}")))
}

/// A fresh directory for a server this process starts (removed when it exits).
fn server_dir(name: &str) -> Result<std::path::PathBuf, FixtureError> {
    let dir = std::env::temp_dir().join(format!("highlander-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| FixtureError(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Starts a server process and a watcher that stops it, by its pid, once this test
/// process has exited (and removes `dir`): tests never leave servers behind.
fn spawn_server(what: &str, mut command: std::process::Command, dir: &std::path::Path) -> Result<u32, FixtureError> {
    let log = std::fs::File::create(dir.join("output.log")).map_err(|e| FixtureError(format!("{}: {e}", dir.display())))?;
    let log2 = log.try_clone().map_err(|e| FixtureError(e.to_string()))?;
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| FixtureError(format!("cannot start {what}: {e}")))?;
    let pid = child.id();
    // Pids are reused (a CI run wraps around pid_max within minutes): the server is
    // known by its pid *and* its start time, so the reaper never kills a stranger.
    let Some(its_start) = start_time(pid) else {
        return Err(FixtureError(format!("cannot read the start time of {what} from /proc")));
    };
    on_exit(
        what,
        &format!(
            "[ \"$(sed 's/^.*) //' /proc/{pid}/stat 2>/dev/null | cut -d' ' -f20)\" = '{its_start}' ] && kill {pid} 2>/dev/null; rm -rf '{}'",
            dir.display()
        ),
    )?;
    Ok(pid)
}

/// A process's start time (clock ticks since boot), which with its pid names it uniquely.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(19).map(str::to_string)
}

async fn wait_listening(what: &str, port: u16, dir: &std::path::Path, log: &str) -> Result<(), FixtureError> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
    Err(FixtureError(format!("{what} did not listen on 127.0.0.1:{port}: {}", log.lines().last().unwrap_or("(no log)"))))
}

/// The Cloud Spanner emulator shipped with the Google Cloud SDK.
pub const SPANNER_EMULATOR: &str = "/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main";

/// A `spanner://` URL on the Cloud Spanner emulator: `LOCK_TEST_SPANNER_EMULATOR`
/// (`host:port`), else an emulator started here on 127.0.0.1 (stopped by its pid when
/// this process exits). [`harness`] creates the instance, database and table.
pub async fn spanner_url() -> Result<String, FixtureError> {
    static CELL: OnceCell<String> = OnceCell::const_new();
    CELL.get_or_try_init(|| async {
        let host = match env("LOCK_TEST_SPANNER_EMULATOR") {
            Some(host) => host,
            None => {
                let binary = env("LOCK_TEST_SPANNER_EMULATOR_BINARY").unwrap_or_else(|| SPANNER_EMULATOR.to_string());
                if !std::path::Path::new(&binary).exists() {
                    return Err(FixtureError(format!(
                        "the Cloud Spanner emulator is not at {binary} (it comes with the Google Cloud SDK; or set LOCK_TEST_SPANNER_EMULATOR=HOST:PORT)"
                    )));
                }
                let dir = server_dir("spanner")?;
                let port = free_loopback_port()?;
                let mut command = std::process::Command::new(binary);
                command.args(["--host_port", &format!("127.0.0.1:{port}")]).current_dir(&dir);
                spawn_server("the Cloud Spanner emulator", command, &dir)?;
                wait_listening("the Cloud Spanner emulator", port, &dir, "output.log").await?;
                format!("127.0.0.1:{port}")
            }
        };
        Ok(format!("spanner://highlander-test/conformance/locks?emulator={host}"))
    })
    .await
    .cloned()
}

/// A server process a test started (stopped by its pid when the test process exits, or
/// earlier by [`kill`](Self::kill)).
#[derive(Debug)]
pub struct ServerProcess {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its process id.
    pub pid: u32,
    /// Its directory (data, logs).
    pub dir: std::path::PathBuf,
}

impl ServerProcess {
    /// Kills it with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&self) {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
        self.wait_gone();
    }

    /// Waits (up to 2 s) until the process is gone or a zombie.
    fn wait_gone(&self) {
        for _ in 0..200 {
            if !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
                || std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).is_ok_and(|s| s.contains(") Z "))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The Redis server binary (Debian's `redis-server`).
fn redis_binary() -> Result<String, FixtureError> {
    env("LOCK_TEST_REDIS_BINARY")
        .or_else(|| {
            ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .map(String::from)
        })
        .ok_or_else(|| FixtureError("redis-server is not installed (apt-get install redis-server; scripts/setup does)".into()))
}

/// Starts a Redis server on 127.0.0.1 with no persistence and `extra` arguments
/// (`--requirepass`, `--replicaof`, TLS, …); `name` names its directory.
pub async fn redis_server(name: &str, extra: &[&str]) -> Result<ServerProcess, FixtureError> {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = server_dir(&format!("redis-{name}-{n}"))?;
    let port = free_loopback_port()?;
    let mut command = std::process::Command::new(redis_binary()?);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(extra);
    let pid = spawn_server("redis-server", command, &dir)?;
    wait_listening("redis-server", port, &dir, "output.log").await?;
    Ok(ServerProcess { port, pid, dir })
}

/// A server that can be stopped and started again on the same port with its data, for
/// the restart check: Redis (append-only file on) or ZooKeeper (its data directory).
#[derive(Debug)]
pub struct RestartableServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    kind: ServerKind,
    dir: std::path::PathBuf,
    pid: std::sync::Mutex<Option<u32>>,
}

#[derive(Debug, Clone, Copy)]
enum ServerKind {
    Redis,
    ZooKeeper,
}

impl RestartableServer {
    /// Starts a Redis server; `name` names its directory.
    pub async fn redis(name: &str) -> Result<Self, FixtureError> {
        Self::start(ServerKind::Redis, &format!("redis-restart-{name}")).await
    }

    /// Starts a standalone ZooKeeper server (as [`zookeeper_server`]); `name` names its directory.
    pub async fn zookeeper(name: &str) -> Result<Self, FixtureError> {
        Self::start(ServerKind::ZooKeeper, &format!("zookeeper-restart-{name}")).await
    }

    async fn start(kind: ServerKind, dir: &str) -> Result<Self, FixtureError> {
        let server = Self { port: free_loopback_port()?, kind, dir: server_dir(dir)?, pid: std::sync::Mutex::new(None) };
        server.launch().await?;
        Ok(server)
    }

    async fn launch(&self) -> Result<(), FixtureError> {
        let (what, command) = match self.kind {
            ServerKind::Redis => {
                let mut command = std::process::Command::new(redis_binary()?);
                command
                    .args([
                        "--port",
                        &self.port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "yes",
                        "--daemonize",
                        "no",
                    ])
                    .arg("--dir")
                    .arg(&self.dir);
                ("redis-server", command)
            }
            ServerKind::ZooKeeper => ("ZooKeeper", zookeeper_command(&self.dir, self.port)?),
        };
        let pid = spawn_server(what, command, &self.dir)?;
        *self.pid.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pid);
        wait_listening(what, self.port, &self.dir, "output.log").await?;
        match self.kind {
            ServerKind::Redis => Ok(()),
            ServerKind::ZooKeeper => zookeeper_serving(self.port, &self.dir).await,
        }
    }

    /// Stops it with SIGTERM (Redis writes its append-only file; ZooKeeper's log is
    /// already on disk) and waits until it is gone.
    pub fn stop(&self) {
        if let Some(pid) = self.pid.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            ServerProcess { port: self.port, pid, dir: self.dir.clone() }.wait_gone();
        }
    }
}

#[async_trait::async_trait]
impl crate::checks::restart::RestartableStore for RestartableServer {
    async fn stop(&self) -> Result<(), crate::Failure> {
        RestartableServer::stop(self);
        Ok(())
    }
    async fn start(&self) -> Result<(), crate::Failure> {
        self.launch().await.map_err(|e| crate::Failure(e.to_string()))
    }
}

impl Drop for RestartableServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `redis://` URL: `LOCK_TEST_REDIS_URL`, else a server started here on 127.0.0.1
/// (one per test process, stopped by its pid when the process exits).
pub async fn redis_url() -> Result<String, FixtureError> {
    static CELL: OnceCell<String> = OnceCell::const_new();
    CELL.get_or_try_init(|| async {
        if let Some(url) = env("LOCK_TEST_REDIS_URL") {
            return Ok(url);
        }
        let server = redis_server("suite", &[]).await?;
        Ok(format!("redis://127.0.0.1:{}/0?prefix=conformance/", server.port))
    })
    .await
    .cloned()
}

fn openssl(args: &mut std::process::Command, what: &str) -> Result<(), FixtureError> {
    let out = args
        .output()
        .map_err(|e| FixtureError(format!("cannot run openssl ({what}): {e} (apt-get install openssl; scripts/setup does)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FixtureError(format!("openssl ({what}) failed: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// A throwaway certificate authority `NAME-ca.pem` (key `NAME-ca.key`) in `dir`, made
/// with `openssl`, valid for a day.
pub fn test_ca(dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf, FixtureError> {
    let ca = dir.join(format!("{name}-ca.pem"));
    openssl(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={name}"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout"])
            .arg(dir.join(format!("{name}-ca.key")))
            .arg("-out")
            .arg(&ca),
        "the CA",
    )?;
    Ok(ca)
}

/// A certificate for `localhost` / 127.0.0.1 signed by `ca` (from [`test_ca`]):
/// `dir/server.crt` and `dir/server.key`, for server (and client) authentication.
pub fn test_server_certificate(
    dir: &std::path::Path,
    ca: &std::path::Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), FixtureError> {
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .map_err(|e| FixtureError(e.to_string()))?;
    let (crt, key, csr) = (dir.join("server.crt"), dir.join("server.key"), dir.join("server.csr"));
    openssl(
        std::process::Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "the server's request",
    )?;
    openssl(
        std::process::Command::new("openssl")
            .args(["x509", "-req", "-days", "1", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(ca)
            .arg("-CAkey")
            .arg(ca.with_extension("key"))
            .args(["-CAcreateserial", "-out"])
            .arg(&crt)
            .arg("-extfile")
            .arg(&ext),
        "the server's certificate",
    )?;
    Ok((crt, key))
}

/// Starts a standalone ZooKeeper server (Debian's `zookeeper` package, on Java) on
/// 127.0.0.1 with a 200 ms tick (sessions of 0.4 to 4 s), no admin server.
pub async fn zookeeper_server(name: &str) -> Result<ServerProcess, FixtureError> {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = server_dir(&format!("zookeeper-{name}-{n}"))?;
    let port = free_loopback_port()?;
    let pid = spawn_server("ZooKeeper", zookeeper_command(&dir, port)?, &dir)?;
    wait_listening("ZooKeeper", port, &dir, "output.log").await?;
    zookeeper_serving(port, &dir).await?;
    Ok(ServerProcess { port, pid, dir })
}

/// The command that runs ZooKeeper on `port` with its configuration and data in `dir`.
fn zookeeper_command(dir: &std::path::Path, port: u16) -> Result<std::process::Command, FixtureError> {
    let jars = env("LOCK_TEST_ZOOKEEPER_CLASSPATH").unwrap_or_else(|| "/usr/share/java/*".into());
    if env("LOCK_TEST_ZOOKEEPER_CLASSPATH").is_none() && !std::path::Path::new("/usr/share/java/zookeeper.jar").exists() {
        return Err(FixtureError("ZooKeeper is not installed (apt-get install zookeeper; scripts/setup does)".into()));
    }
    let config = format!(
        "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxClientCnxns=0\n4lw.commands.whitelist=srvr\n",
        dir.join("data").display()
    );
    std::fs::write(dir.join("zoo.cfg"), config).map_err(|e| FixtureError(e.to_string()))?;
    let mut command = std::process::Command::new("java");
    command.args(["-Xmx256m", "-cp", &jars, "org.apache.zookeeper.server.quorum.QuorumPeerMain"]).arg(dir.join("zoo.cfg"));
    Ok(command)
}

/// ZooKeeper listens before it serves: asks until it says it serves (`srvr` names its mode).
async fn zookeeper_serving(port: u16, dir: &std::path::Path) -> Result<(), FixtureError> {
    for _ in 0..300 {
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            conn.write_all(b"srvr").ok()?;
            let mut out = String::new();
            conn.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .await
        .ok()
        .flatten();
        if answer.is_some_and(|a| a.contains("Mode:")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(FixtureError(format!("ZooKeeper on 127.0.0.1:{port} never served requests (see {})", dir.join("output.log").display())))
}

/// A `zookeeper://` URL: `LOCK_TEST_ZOOKEEPER_URL`, else a server started here on
/// 127.0.0.1 (one per test process, stopped by its pid when the process exits).
pub async fn zookeeper_url() -> Result<String, FixtureError> {
    static CELL: OnceCell<String> = OnceCell::const_new();
    CELL.get_or_try_init(|| async {
        if let Some(url) = env("LOCK_TEST_ZOOKEEPER_URL") {
            return Ok(url);
        }
        let server = zookeeper_server("suite").await?;
        Ok(format!("zookeeper://127.0.0.1:{}/conformance", server.port))
    })
    .await
    .cloned()
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0")))
        .unwrap_or(false)
}
