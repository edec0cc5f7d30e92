//! [`TcpProxy`]: a small TCP relay on 127.0.0.1 between a node and a service it uses
//! (PostgreSQL), which a test can cut and mend, and slow down: a partition between that node
//! and that service alone, or a far-away link, without iptables or netem.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay to `target`, running on threads of its own until dropped.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    target: SocketAddr,
    cut: AtomicBool,
    stopped: AtomicBool,
    /// Added to each chunk relayed, in milliseconds.
    delay_ms: AtomicU64,
    /// Both ends of every relayed connection, to close them when cut.
    open: Mutex<Vec<TcpStream>>,
}

impl TcpProxy {
    /// Relays connections to `target` from a new port on 127.0.0.1.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State {
            target,
            cut: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
        });
        let accepting = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                if accepting.cut.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                relay(&accepting, client);
            }
        });
        TcpProxy { addr, state }
    }

    /// `url` (a `scheme://user@host:port/path` URL) pointing at this proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}/{path}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones until [`TcpProxy::mend`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::Release);
        for stream in self.state.open.lock().expect("no panic holds it").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Relays again.
    pub fn mend(&self) {
        self.state.cut.store(false, Ordering::Release);
    }

    /// Delays each chunk relayed either way by `ms`.
    pub fn set_delay_ms(&self, ms: u64) {
        self.state.delay_ms.store(ms, Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Release);
        self.cut();
        // Wakes the accepting thread so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(state: &Arc<State>, client: TcpStream) {
    let Ok(server) = TcpStream::connect_timeout(&state.target, Duration::from_secs(2)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut open = state.open.lock().expect("no panic holds it");
        for stream in [&client, &server] {
            if let Ok(clone) = stream.try_clone() {
                open.push(clone);
            }
        }
    }
    for (from, to) in [(&client, &server), (&server, &client)] {
        let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
            return;
        };
        let state = state.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                let delay = state.delay_ms.load(Ordering::Acquire);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                if state.cut.load(Ordering::Acquire) || to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}
