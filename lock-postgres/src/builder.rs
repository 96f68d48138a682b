//! Building a store: TLS, the pool, the settings checked.

use super::*;
use crate::advisory;

/// How to secure the connection. Whenever TLS is used the server's certificate is
/// verified, host name included, against Mozilla's root certificates or the ones
/// given by `sslrootcert` / [`PostgresStoreBuilder::root_certificates_file`]: a lock
/// store an attacker could impersonate would hand out leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Follow the URL's `sslmode`: `disable` → plain; `prefer` (the default) → TLS if
    /// the server offers it; `require`, `verify-ca`, `verify-full` → TLS or no connection.
    FromUrl,
    /// Never use TLS.
    Disabled,
    /// Always use TLS.
    Required,
}

impl PostgresStoreBuilder {
    /// Validates the settings and builds the store (connections are made lazily).
    pub fn build(mut self) -> Result<PostgresStore> {
        let schema = config::valid_identifier("schema", &self.schema)?;
        let table = config::valid_identifier("table", &self.table)?;
        if self.statement_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("postgres statement and connect timeouts must be greater than zero".into()));
        }
        self.config.connect_timeout(self.connect_timeout);
        let tls = match self.tls {
            Tls::Disabled => false,
            Tls::Required => true,
            Tls::FromUrl => self.config.get_ssl_mode() != SslMode::Disable,
        };
        if self.tls == Tls::Required {
            self.config.ssl_mode(SslMode::Require);
        }
        let endpoint = config::endpoint(&self.config);
        // Sessions are connections of their own: with several hosts, each could reach a
        // different one unless all must reach the writable primary.
        if self.advisory
            && self.listen.is_none()
            && self.config.get_hosts().len() > 1
            && self.config.get_target_session_attrs() != tokio_postgres::config::TargetSessionAttrs::ReadWrite
        {
            return Err(Error::Config(format!(
                "postgres {endpoint}: advisory=true with several hosts needs target_session_attrs=read-write (or listen=HOST:PORT), so that the lock's session and the row are on one server"
            )));
        }
        // Where a cancel request for a pooled connection goes: its one TCP host (several
        // hosts: whichever the connection took, which only the driver knows).
        let cancel_to = match (self.config.get_hosts(), self.config.get_ports()) {
            ([tokio_postgres::config::Host::Tcp(host)], ports) => Some((host.clone(), ports.first().copied().unwrap_or(5432))),
            _ => None,
        };
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let mut listen_config = self.config.clone();
        if let Some((host, port)) = &self.listen {
            // Same user, database and TLS; another address.
            let mut direct = tokio_postgres::Config::new();
            if let Some(user) = self.config.get_user() {
                direct.user(user);
            }
            if let Some(password) = self.config.get_password() {
                direct.password(password);
            }
            if let Some(db) = self.config.get_dbname() {
                direct.dbname(db);
            }
            direct.ssl_mode(self.config.get_ssl_mode()).application_name("highlander-listen").host(host).port(*port);
            direct.connect_timeout(self.connect_timeout);
            listen_config = direct;
        }
        let mut connector = None;
        let statements = self.pool_size - 1;
        let manager = if tls {
            let roots = match &self.root_cert {
                None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
                Some(path) => root_certificates(path).map_err(|why| Error::Config(format!("postgres TLS for {endpoint}: {why}")))?,
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Config(format!("postgres TLS for {endpoint}: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let make = tokio_postgres_rustls::MakeRustlsConnect::new(client);
            connector = Some(make.clone());
            Manager::from_connect(self.config, Counted::new(make, statements), manager_config)
        } else {
            Manager::from_connect(self.config, Counted::new(tokio_postgres::NoTls, statements), manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(statements)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| Error::Config(format!("postgres pool for {endpoint}: {e}")))?;
        let qualified = format!("\"{schema}\".\"{table}\"");
        // NOTIFY channels are identifiers of at most 63 bytes.
        let channel: String = format!("highlander_{table}").chars().take(63).collect();
        let notify_prefix = format!("{qualified}\n");
        let inner = Inner {
            pool,
            endpoint,
            schema,
            qualified,
            tls,
            listen_config,
            connector,
            cancel_to,
            channel,
            notify_prefix,
            statement_timeout: self.statement_timeout,
            cancel: self.cancel,
            advisory: self.advisory,
            direct: self.listen.is_some(),
            pooled: std::sync::atomic::AtomicBool::new(false),
            sessions: advisory::Sessions::default(),
            cancels: tokio::sync::Semaphore::new(1),
            hub: Arc::default(),
            stop: tokio::sync::watch::channel(()).0,
            notifications: std::sync::atomic::AtomicU8::new(if self.notify { NOTIFY_UNKNOWN } else { NOTIFY_OFF }),
        };
        Ok(PostgresStore { inner: Arc::new(inner) })
    }
}

/// Makes the pool's connections, at most `sockets` open at once. The pool's own bound
/// counts a connection it has let go of as gone at once, while its socket is still
/// being closed on the runtime that drives it; a replacement made meanwhile would
/// exceed the pool size. Here each socket holds a permit until it is closed.
struct Counted<T> {
    tls: T,
    sockets: Arc<tokio::sync::Semaphore>,
}

impl<T> Counted<T> {
    fn new(tls: T, sockets: usize) -> Self {
        Counted { tls, sockets: Arc::new(tokio::sync::Semaphore::new(sockets)) }
    }
}

/// A connection's driver and the permit its socket holds, dropped in that order.
struct Driven<C> {
    connection: std::pin::Pin<Box<C>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<C: std::future::Future> std::future::Future for Driven<C> {
    type Output = C::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<C::Output> {
        self.connection.as_mut().poll(cx)
    }
}

impl<T> deadpool_postgres::Connect for Counted<T>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = std::result::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
                > + Send
                + '_,
        >,
    > {
        let (tls, config, sockets) = (self.tls.clone(), config.clone(), self.sockets.clone());
        Box::pin(async move {
            // The pool's create timeout bounds this wait.
            let permit = sockets.acquire_owned().await.expect("the semaphore is never closed");
            let (client, connection) = config.connect(tls).await?;
            let driven = Driven { connection: Box::pin(connection), _permit: permit };
            // Aborted when the pool drops the client: the socket is closed, then the
            // permit returned.
            let task = tokio::spawn(async move {
                let _ = driven.await;
            });
            Ok((client, task))
        })
    }
}

/// The CA certificates of a PEM file.
fn root_certificates(path: &std::path::Path) -> std::result::Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("no usable CA certificate in {}", path.display()));
    }
    Ok(roots)
}
