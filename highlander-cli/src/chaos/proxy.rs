//! A TCP proxy per candidate, so a fault can cut one candidate (a partition) or all
//! of them (an outage) off the store without touching the store. A cut is a black
//! hole, as a real partition is: connections stay open and nothing passes either way,
//! so calls hang until their timeouts; new connections are accepted and held. When the
//! cut heals, what waited is delivered, late. A delay (a slow link) holds every chunk
//! that long in each direction.

use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// A running proxy to one `host:port`.
pub(crate) struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    delay: watch::Sender<Duration>,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards every connection to `target`.
    pub(crate) async fn start(target: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, watched) = watch::channel(false);
        let (delay, delayed) = watch::channel(Duration::ZERO);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, cut, delay) = (target.clone(), watched.clone(), delayed.clone());
                tokio::spawn(async move {
                    if wait_open(&cut).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, cut.clone(), delay.clone()), pump(sr, cw, cut, delay));
                });
            }
        });
        Ok(Self { addr, cut, delay })
    }

    /// Where candidates connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`true`) or heals (`false`) the link.
    pub(crate) fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }

    /// Holds every chunk `delay` in each direction (zero: none), so a round trip takes twice it more.
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay.send_replace(delay);
    }
}

async fn wait_open(cut: &watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    let mut cut = cut.clone();
    loop {
        if !*cut.borrow_and_update() {
            return Ok(());
        }
        cut.changed().await?;
    }
}

async fn wait_cut(cut: &watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    let mut cut = cut.clone();
    loop {
        if *cut.borrow_and_update() {
            return Ok(());
        }
        cut.changed().await?;
    }
}

/// Copies one direction, holding everything while the link is cut. A delay is a delay
/// line: each chunk is delivered its delay after it was read, chunks in flight together,
/// as on a long link (not one chunk's delay after the last one's).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: watch::Receiver<bool>,
    delay: watch::Receiver<Duration>,
) {
    let (line, mut arriving) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(256);
    let read = {
        let cut = cut.clone();
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                if wait_open(&cut).await.is_err() {
                    return;
                }
                let n = tokio::select! {
                    read = from.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    },
                    // A cut while waiting for data: stop reading until it heals.
                    _ = wait_cut(&cut) => continue,
                };
                let due = tokio::time::Instant::now() + *delay.borrow();
                if line.send((due, buffer[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = arriving.recv().await {
            tokio::time::sleep_until(due).await;
            if wait_open(&cut).await.is_err() || to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_holds_bytes_until_it_heals() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = echo.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(target).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        c.write_all(b"ping").await.expect("write");
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.expect("echo");
        assert_eq!(&b, b"ping");
        proxy.set_cut(true);
        c.write_all(b"pong").await.expect("write");
        let held = tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut b)).await;
        assert!(held.is_err(), "nothing passes while cut");
        proxy.set_cut(false);
        tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut b)).await.expect("delivered after healing").expect("read");
        assert_eq!(&b, b"pong");
        proxy.set_delay(Duration::from_millis(150));
        let asked = std::time::Instant::now();
        c.write_all(b"slow").await.expect("write");
        c.read_exact(&mut b).await.expect("echo");
        assert_eq!(&b, b"slow");
        assert!(asked.elapsed() >= Duration::from_millis(300), "a round trip through a 150 ms link: {:?}", asked.elapsed());
    }
}
