//! RESP on the wire for the harness: requests are written straight into a byte buffer (a
//! request is an array of bulk strings, nothing more), replies are decoded with redis-protocol.
//! [`Conn`] serves the tokio scenarios; the open loop drives its own non-blocking sockets
//! with [`take_reply`], for finer timing than tokio's millisecond timer.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Size of a connection's read buffer, and of each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Appends one request (an array of bulk strings) to `buf`.
pub fn push_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    push_header(buf, b'*', args.len());
    for arg in args {
        push_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

fn push_header(buf: &mut Vec<u8>, kind: u8, len: usize) {
    buf.push(kind);
    buf.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// One decoded reply: whether it was an error, and the frame for the callers that read it.
#[derive(Debug)]
pub struct Reply {
    /// The frame as decoded.
    pub frame: BytesFrame,
}

impl Reply {
    /// The error text, when the reply is an error.
    pub fn error(&self) -> Option<String> {
        match &self.frame {
            BytesFrame::Error(text) => Some(text.to_string()),
            _ => None,
        }
    }

    /// The reply as text (bulk or simple string), for setup calls like SCRIPT LOAD and INFO.
    pub fn text(&self) -> Option<String> {
        match &self.frame {
            BytesFrame::BulkString(bytes) | BytesFrame::SimpleString(bytes) => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => None,
        }
    }
}

/// Takes one complete reply off the front of `buf`, if there is one.
pub fn take_reply(buf: &mut BytesMut) -> io::Result<Option<Reply>> {
    match decode_bytes_mut(buf) {
        Ok(Some((frame, _used, _bytes))) => Ok(Some(Reply { frame })),
        Ok(None) => Ok(None),
        Err(error) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server sent a malformed reply: {}", error.details()),
        )),
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    )
}

/// An async connection: a request buffer filled by the caller, and replies read one by one.
pub struct Conn {
    stream: TcpStream,
    read: BytesMut,
    /// Requests to send with the next [`Conn::flush`].
    pub out: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`, from `source` (a loopback address of its own) when given.
    pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Conn> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = source {
            bind_address_no_port(&socket)?;
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK_BYTES),
            out: Vec::with_capacity(READ_CHUNK_BYTES),
        })
    }

    /// Closes with a reset instead of a FIN (SO_LINGER 0), leaving no TIME_WAIT behind: a
    /// storm's 100,000 of them would hold loopback ports for a minute after it.
    pub fn close_now(self) -> io::Result<()> {
        self.stream.set_zero_linger()
    }

    /// Sends everything in `out`.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// The next reply.
    pub async fn reply(&mut self) -> io::Result<Reply> {
        loop {
            if let Some(reply) = take_reply(&mut self.read)? {
                return Ok(reply);
            }
            self.read.reserve(READ_CHUNK_BYTES);
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(closed());
            }
        }
    }

    /// Sends one command and waits for its reply (setup and INFO, not the measured path).
    pub async fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        push_command(&mut self.out, args);
        self.flush().await?;
        self.reply().await
    }
}

/// Has Linux pick the source port at connect rather than at bind (IP_BIND_ADDRESS_NO_PORT).
/// A port taken by bind() is one no other socket may take on any address, and bind() finds one
/// ever more slowly as they run out: a storm of 100,000 bound connections took 150 s to open
/// and left connect() on the whole machine without ports. Taken at connect, a port is unique
/// per source and destination only, as for any client socket.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is this socket's, open for the whole call, and the option value
    // points to a c_int that outlives the call, its size given beside it.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the port is taken at bind.
#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &TcpSocket) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut buf = Vec::new();
        push_command(&mut buf, &[b"CART.GET", b"cart:1"]);
        assert_eq!(buf, b"*2\r\n$8\r\nCART.GET\r\n$6\r\ncart:1\r\n");
    }

    #[test]
    fn replies_are_taken_whole_or_not_at_all() {
        let mut buf = BytesMut::from(&b"-ERR no\r\n:5\r\n$3\r\nab"[..]);
        let first = take_reply(&mut buf).unwrap().unwrap();
        assert_eq!(first.error().as_deref(), Some("ERR no"));
        let second = take_reply(&mut buf).unwrap().unwrap();
        assert!(second.error().is_none());
        assert!(take_reply(&mut buf).unwrap().is_none());
    }
}
