//! [`TcpProxy`]: a small TCP relay between a node and a service it uses (PostgreSQL, another
//! node), which a test can cut and mend, and slow down: a partition between that node and that
//! service alone, or a far-away link, without iptables or netem. It listens on 127.0.0.1
//! ([`TcpProxy::start`]), or inside a host of a [`crate::netns::Network`]
//! ([`TcpProxy::start_in`]: its threads enter the host's namespace before they bind or
//! connect, so the relay is that host's, between the regions of a network, say).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netns::{enter_namespace, Host};

/// A relay to `target`, running on threads of its own until dropped.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// What a proxy's threads share.
struct State {
    /// Where each client is relayed to.
    target: SocketAddr,
    /// Cut: relayed connections closed, new ones refused.
    cut: AtomicBool,
    /// Dropped: the accepting thread returns.
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
        let state = State::new(target);
        let accepting = state.clone();
        std::thread::spawn(move || accept(&accepting, &listener));
        TcpProxy { addr, state }
    }

    /// Relays connections to `target` from a new port on `host`'s address, inside its
    /// namespace: the accepting thread enters it before it binds, and connects to `target`
    /// from there (a socket stays in the namespace it was made in; threads a thread starts
    /// are in its namespace).
    pub fn start_in(host: &Host, target: SocketAddr) -> TcpProxy {
        let state = State::new(target);
        let accepting = state.clone();
        let namespace = host.namespace.clone();
        let ip = host.ip;
        let (bound, bound_receiver) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let listener = enter_namespace(&namespace)
                .and_then(|()| TcpListener::bind((ip, 0)))
                .and_then(|listener| Ok((listener.local_addr()?, listener)));
            match listener {
                Ok((addr, listener)) => {
                    let _ = bound.send(Ok(addr));
                    accept(&accepting, &listener);
                }
                Err(error) => {
                    let _ = bound.send(Err(error));
                }
            }
        });
        let addr = bound_receiver
            .recv()
            .expect("the accepting thread says where it listens")
            .unwrap_or_else(|error| {
                panic!("bind a proxy in namespace {}: {error}", host.namespace)
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
        // Wakes the accepting thread so it sees `stopped` (bounded: a namespace's network
        // may be gone already, and then that thread goes with the process).
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

impl State {
    /// A relay's state to `target`: not cut, not stopped, no delay.
    fn new(target: SocketAddr) -> Arc<State> {
        Arc::new(State {
            target,
            cut: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
        })
    }
}

/// Accepts on `listener` until the proxy stops, relaying each client unless cut.
fn accept(state: &Arc<State>, listener: &TcpListener) {
    for client in listener.incoming() {
        if state.stopped.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        if state.cut.load(Ordering::Acquire) {
            drop(client);
            continue;
        }
        relay(state, client);
    }
}

/// Connects to the target (from the calling thread's namespace) and relays `client` both ways,
/// a thread each way, every chunk after the delay; either end closing closes both.
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
