//! Change notifications: LISTEN/NOTIFY on a connection of its own, and the check that
//! they reach it (a transaction-mode pooler does not deliver them).

use super::*;

impl PostgresStore {
    /// Finds out whether change notifications reach this store's LISTEN connection (a
    /// transaction-mode pooler does not deliver them), starting the shared feed if
    /// none runs. Afterwards [`capabilities`](LeaseStore::capabilities) says what is so.
    pub async fn check_notifications(&self) -> Result<bool> {
        if self.inner.notifications.load(std::sync::atomic::Ordering::Relaxed) == NOTIFY_OFF {
            return Ok(false);
        }
        let probe = LockName::new("highlander-notification-probe")?;
        let watching = self.watch(&probe).await?;
        Ok(watching.is_some())
    }

    /// Opens the LISTEN connection and a task that fans its notifications out; then
    /// proves delivery with a NOTIFY sent through the pool, which a transaction-mode
    /// pooler never hands to the listening client. `Ok(false)`: notifications do not
    /// arrive here, and the store says so from now on.
    pub(crate) async fn listen<T>(&self, tls: T, generation: u64) -> Result<bool>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        if self.inner.notifications.load(std::sync::atomic::Ordering::Relaxed) == NOTIFY_WORKING {
            return self.open_feed(tls, generation, None).await.map(|_| true);
        }
        let nonce = format!("{:016x}", rand_u64());
        let (heard_tx, heard) = tokio::sync::oneshot::channel();
        self.open_feed(tls, generation, Some((nonce.clone(), heard_tx))).await?;
        let client = self.client().await?;
        let payload = format!("{}probe\n{nonce}", self.inner.notify_prefix);
        client
            .query_typed("SELECT pg_notify($1, $2)", &[(&self.inner.channel.as_str(), Type::TEXT), (&payload.as_str(), Type::TEXT)])
            .await
            .map_err(|e| self.error(None, e))?;
        let wait = self.inner.statement_timeout.min(Duration::from_secs(2));
        if tokio::time::timeout(wait, heard).await.is_ok_and(|r| r.is_ok()) {
            self.inner.notifications.store(NOTIFY_WORKING, std::sync::atomic::Ordering::Relaxed);
            return Ok(true);
        }
        self.inner.notifications.store(NOTIFY_OFF, std::sync::atomic::Ordering::Relaxed);
        self.inner.pooled.store(true, std::sync::atomic::Ordering::Relaxed);
        // Stops the feed that hears nothing.
        self.inner.hub.feed_ended(generation);
        tracing::warn!(
            store = %self,
            "change notifications do not reach this store's LISTEN connection (a transaction-mode pooler?): standbys poll; add listen=HOST:PORT of the server itself to the URL to have them"
        );
        Ok(false)
    }

    async fn open_feed<T>(&self, tls: T, generation: u64, mut probe: Option<(String, tokio::sync::oneshot::Sender<()>)>) -> Result<()>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let (client, mut connection) = self.inner.listen_config.connect(tls).await.map_err(|e| self.error(None, e))?;
        let client = Arc::new(client);
        let hub = self.inner.hub.clone();
        let (prefix, description) = (self.inner.notify_prefix.clone(), self.to_string());
        let session = client.clone();
        let feed = async move {
            let _session = session;
            // The connection ended: every watcher's channel closes and electors poll.
            while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                let tokio_postgres::AsyncMessage::Notification(n) = message else { continue };
                if let Some((nonce, _)) = &probe
                    && n.payload().strip_prefix(&prefix).and_then(|p| p.strip_prefix("probe\n")) == Some(nonce.as_str())
                    && let Some((_, heard)) = probe.take()
                {
                    let _ = heard.send(());
                    continue;
                }
                if let Some((lock, raw, version)) = notified(&prefix, n.payload()) {
                    hub.deliver(&lock, &description, raw, version);
                }
            }
        };
        self.inner.hub.spawn_feed(generation, self.inner.stop.subscribe(), feed);
        client.batch_execute(&format!("LISTEN \"{}\"", self.inner.channel)).await.map_err(|e| self.error(None, e))?;
        Ok(())
    }
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(0) ^ u64::from(std::process::id()).rotate_left(32)
}

/// A notification's lock, record and version, if it is about this table:
/// `schema.table`, version, lock, record.
fn notified(prefix: &str, payload: &str) -> Option<(LockName, Bytes, Version)> {
    let rest = payload.strip_prefix(prefix)?;
    let (version, rest) = rest.split_once('\n')?;
    let (name, record) = rest.split_once('\n')?;
    let lock = LockName::new(name).ok()?;
    let (number, xmin) = version.split_once(':')?;
    Some((lock, Bytes::from(record.to_string()), version_of(number.parse().ok()?, xmin)))
}
