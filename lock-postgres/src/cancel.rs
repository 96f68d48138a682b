//! Cancel requests for statements whose futures were dropped, within the pool's size.

use super::*;

/// Asks the server to cancel a statement still running when its future is dropped.
///
/// Connections stay within the pool size: the pool lends `pool_size - 1` connections
/// for statements, and one cancel request at a time per store takes the last place. The
/// abandoned statement's connection (`held`) stays out of the pool until the statement
/// has ended: a cancel that arrived late would otherwise stop whatever the connection
/// ran next.
pub(crate) struct CancelOnDrop {
    pub(crate) token: Option<tokio_postgres::CancelToken>,
    pub(crate) held: Option<deadpool_postgres::Client>,
    pub(crate) store: PostgresStore,
}

impl CancelOnDrop {
    /// The statement answered (successfully or with its own error) within its bound:
    /// nothing is left running to cancel. A timeout leaves the cancel armed.
    pub(crate) fn answered<T>(&mut self, result: &Result<T>) {
        if !matches!(result, Err(Error::Timeout { .. })) {
            self.token = None;
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else { return };
        let held = self.held.take();
        if !self.store.inner.cancel {
            // Not cancelled: the connection is closed, never reused.
            if let Some(held) = held {
                drop(deadpool_postgres::Object::take(held));
            }
            return;
        }
        let store = self.store.clone();
        // On a thread of its own, so that the request is finished even if the caller's
        // runtime is shutting down: a cancel connection dropped half-way can crash
        // PgBouncer 1.18 ("bad client state: 0", pgbouncer/pgbouncer#801).
        let _ = std::thread::Builder::new().name("highlander-pg-cancel".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                let cancelled = tokio::time::timeout(CANCEL_TIMEOUT, async {
                    let Ok(_turn) = store.inner.cancels.acquire().await else { return false };
                    cancel(&store, token).await
                })
                .await
                .unwrap_or(false);
                let Some(held) = held else { return };
                // The server has signalled the statement when it closes the cancel
                // connection; an empty query queued behind the statement answers once
                // the statement has ended. Only then is the connection idle and clean
                // for the pool; otherwise it is closed.
                let clean =
                    cancelled && tokio::time::timeout(store.inner.statement_timeout, held.simple_query("")).await.is_ok_and(|r| r.is_ok());
                if !clean {
                    drop(deadpool_postgres::Object::take(held));
                }
            });
        });
    }
}

/// Sends one cancel request and waits for the server to close its connection: `true`
/// if it was sent and answered.
async fn cancel(store: &PostgresStore, token: tokio_postgres::CancelToken) -> bool {
    let Some((host, port)) = &store.inner.cancel_to else {
        // Several hosts: only the driver knows which one the connection took.
        return match store.inner.connector.clone() {
            Some(tls) => token.cancel_query(tls).await.is_ok(),
            None => token.cancel_query(tokio_postgres::NoTls).await.is_ok(),
        };
    };
    let Ok(stream) = tokio::net::TcpStream::connect((host.as_str(), *port)).await else { return false };
    // A second handle on the same socket outlives the driver's, which it drops (and
    // would close) as soon as the request is written.
    let Some((stream, mut kept)) = duplicate(stream) else { return false };
    let sent = match store.inner.connector.clone() {
        Some(mut tls) => match tokio_postgres::tls::MakeTlsConnect::<Lingering>::make_tls_connect(&mut tls, host) {
            Ok(tls) => token.cancel_query_raw(Lingering(stream), tls).await.is_ok(),
            Err(_) => false,
        },
        None => token.cancel_query_raw(Lingering(stream), tokio_postgres::NoTls).await.is_ok(),
    };
    if sent {
        until_closed(&mut kept).await;
    }
    sent
}

/// Two handles on one TCP connection: the connection stays open until both are dropped.
fn duplicate(stream: tokio::net::TcpStream) -> Option<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    let std = stream.into_std().ok()?;
    let copy = std.try_clone().ok()?;
    Some((tokio::net::TcpStream::from_std(std).ok()?, tokio::net::TcpStream::from_std(copy).ok()?))
}

/// Reads until the server closes the connection (or it fails).
async fn until_closed(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// How long a cancel request may take, connection and answer included.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// A cancel request's connection that the driver cannot half-close: it is closed only
/// once the server has closed it, as libpq does. (tokio-postgres shuts the socket down
/// as soon as the request is written, and PgBouncer 1.18 crashes when a cancel request's
/// client leaves before the pooler has forwarded it: "bad client state: 0".)
struct Lingering(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Lingering {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Lingering {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    /// No half-close: the server ends the exchange.
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
