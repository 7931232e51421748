//! A TCP proxy on 127.0.0.1 that a test puts between the server and PostgreSQL, to slow the
//! link down, to drop it (bytes stop flowing both ways, and nothing says so), or to reset it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow as they come.
    Up,
    /// Each chunk waits this long before it is passed on.
    Slow(Duration),
    /// Bytes stop flowing, both ways, on every connection open now, and none is closed: they
    /// stay dead for good (as behind a router that forgot them), until `reset`. New ones work.
    Dropped,
}

pub struct Proxy {
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    /// Every connection's pumps and the client side's socket, to reset.
    connections: Arc<Mutex<Vec<Connection>>>,
    accept: JoinHandle<()>,
}

struct Connection {
    pumps: [JoinHandle<()>; 2],
    client: std::net::TcpStream,
    /// Set when the link drops: its pumps swallow what they read and keep their sockets.
    dead: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let (link, watching) = watch::channel(Link::Up);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept(listener, target, watching, Arc::clone(&connections)));
        Self {
            addr,
            link,
            connections,
            accept,
        }
    }

    pub fn set(&self, link: Link) {
        if link == Link::Dropped {
            // The connections open now are the ones that die.
            for connection in self.connections.lock().unwrap().iter() {
                connection.dead.store(true, Ordering::SeqCst);
            }
        }
        self.link.send_replace(link);
    }

    /// Resets every connection open now (an RST to the server); new ones work.
    pub fn reset(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            for pump in &connection.pumps {
                pump.abort();
            }
            reset_on_close(&connection.client);
            drop(connection.client);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    link: watch::Receiver<Link>,
    connections: Arc<Mutex<Vec<Connection>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let Ok(server) = TcpStream::connect(target).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        // A second handle on the client's socket, to reset it; the pumps own the first.
        let client_std = client.into_std().expect("a std socket");
        let kept = client_std.try_clone().expect("clone the socket");
        let client = TcpStream::from_std(client_std).expect("back to tokio");
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let dead = Arc::new(AtomicBool::new(false));
        let pumps = [
            tokio::spawn(pump(client_read, server_write, link.clone(), dead.clone())),
            tokio::spawn(pump(server_read, client_write, link.clone(), dead.clone())),
        ];
        connections.lock().unwrap().push(Connection {
            pumps,
            client: kept,
            dead,
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: watch::Receiver<Link>,
    dead: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        let now = *link.borrow();
        if let Link::Slow(delay) = now {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// SO_LINGER with a zero timeout: closing the socket sends an RST, not a FIN.
fn reset_on_close(socket: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
