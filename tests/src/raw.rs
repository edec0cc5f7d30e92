//! Byte-exact conversations with cartd over a plain TCP socket, for tests where the wire
//! itself matters (inline commands, RESP2 flattening, null replies, protocol errors that close
//! the connection). Replies are framed by a small RESP2/RESP3 parser; every read times out.
//! [`parse_reply`] hands a framed reply to the `redis` crate's parser when its value matters
//! more than its bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Cartd;

/// How long one raw read, write, connect or wait for a close may take.
pub const RAW_WAIT: Duration = Duration::from_secs(5);

/// How long [`RawConn::is_closed`] waits for the server to close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How many bytes one read asks for.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A raw TCP connection to cartd; bytes read past the current reply stay buffered for the next.
pub struct RawConn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Cartd {
    /// A raw socket to cartd.
    pub async fn raw(&self) -> RawConn {
        RawConn::connect(self.addr()).await
    }
}

/// What one read from the socket gave.
enum Read {
    Data,
    Closed,
    TimedOut,
}

impl RawConn {
    /// Connects to `addr` (within [`RAW_WAIT`]).
    pub async fn connect(addr: std::net::SocketAddr) -> RawConn {
        let stream = tokio::time::timeout(RAW_WAIT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} in time"))
            .unwrap_or_else(|error| panic!("connect to {addr}: {error}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        RawConn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Writes all of `bytes` (within [`RAW_WAIT`]).
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(RAW_WAIT, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write to cartd");
    }

    /// Writes all of `bytes`; false if the connection is gone (a server killed on purpose).
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(RAW_WAIT, self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Reads one reply; `None` if the connection closes (or stays silent for [`RAW_WAIT`])
    /// first.
    pub async fn try_read_reply(&mut self) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + RAW_WAIT;
        loop {
            if let Ok(Some(length)) = reply_length(&self.buffer) {
                return Some(self.buffer.drain(..length).collect());
            }
            match self.read_some(deadline).await {
                Read::Data => {}
                Read::Closed | Read::TimedOut => return None,
            }
        }
    }

    /// Sends a command as a RESP array of bulk strings and reads one reply.
    pub async fn call(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&encode_command(args)).await;
        self.read_reply().await
    }

    /// Reads exactly one complete RESP2/RESP3 reply (aggregates nested to any depth, a RESP3
    /// attribute together with the reply it annotates) and returns its bytes. Panics if the
    /// bytes are not RESP, the connection closes first, or the reply takes longer than [`RAW_WAIT`].
    pub async fn read_reply(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + RAW_WAIT;
        loop {
            match reply_length(&self.buffer) {
                Ok(Some(length)) => return self.buffer.drain(..length).collect(),
                Ok(None) => {}
                Err(error) => panic!(
                    "not a RESP reply ({error}): {:?}",
                    String::from_utf8_lossy(&self.buffer)
                ),
            }
            match self.read_some(deadline).await {
                Read::Data => {}
                Read::Closed => panic!(
                    "connection closed before a full reply; have {:?}",
                    String::from_utf8_lossy(&self.buffer)
                ),
                Read::TimedOut => panic!(
                    "no full reply within {RAW_WAIT:?}; have {:?}",
                    String::from_utf8_lossy(&self.buffer)
                ),
            }
        }
    }

    /// Reads until the server closes the connection (within [`RAW_WAIT`]) and returns every byte
    /// not yet read as a reply, e.g. the `-ERR Protocol error: ...` that precedes the close.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + RAW_WAIT;
        loop {
            match self.read_some(deadline).await {
                Read::Data => {}
                Read::Closed => return std::mem::take(&mut self.buffer),
                Read::TimedOut => panic!(
                    "cartd did not close the connection within {RAW_WAIT:?}; have {:?}",
                    String::from_utf8_lossy(&self.buffer)
                ),
            }
        }
    }

    /// The same as [`RawConn::read_to_close`].
    pub async fn read_until_closed(&mut self) -> Vec<u8> {
        self.read_to_close().await
    }

    /// Whether the server closes the connection within [`CLOSE_WAIT`]. Bytes that arrive in
    /// the meantime are kept for [`RawConn::read_reply`]; `false` means it is still open.
    pub async fn is_closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            match self.read_some(deadline).await {
                Read::Data => {}
                Read::Closed => return true,
                Read::TimedOut => return false,
            }
        }
    }

    /// Bytes received but not yet returned as a reply.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// One read into the buffer, or what stopped it. A reset counts as a close.
    async fn read_some(&mut self, deadline: tokio::time::Instant) -> Read {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Read::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => Read::Closed,
            Ok(Ok(read)) => {
                self.buffer.extend_from_slice(&chunk[..read]);
                Read::Data
            }
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one complete reply read by [`RawConn`] into a `redis` crate [`redis::Value`].
pub fn parse_reply(bytes: &[u8]) -> redis::Value {
    redis::parse_redis_value(bytes).expect("a valid RESP reply")
}

/// Length of the first complete RESP2/RESP3 reply in `buffer`: `Ok(None)` while it is
/// incomplete, `Err` when the bytes cannot be RESP.
pub fn reply_length(buffer: &[u8]) -> Result<Option<usize>, String> {
    let Some(&kind) = buffer.first() else {
        return Ok(None);
    };
    let Some(line_end) = buffer.windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    let header = std::str::from_utf8(&buffer[1..line_end.max(1)])
        .map_err(|_| "header is not UTF-8".to_owned())?;
    let body = line_end + 2;
    match kind {
        b'+' | b'-' | b':' | b',' | b'(' => Ok(Some(body)),
        b'_' if header.is_empty() => Ok(Some(body)),
        b'#' if header == "t" || header == "f" => Ok(Some(body)),
        b'$' | b'!' | b'=' => blob_length(kind, header, buffer, body),
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = parse_count(kind, header)?;
            let Some(count) = count else {
                return Ok(Some(body)); // *-1: the RESP2 null array
            };
            let elements = if matches!(kind, b'%' | b'|') {
                2 * count
            } else {
                count
            };
            let mut offset = body;
            for _ in 0..elements {
                match reply_length(&buffer[offset..])? {
                    Some(length) => offset += length,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute annotates the reply that follows it: both are one reply.
                return Ok(reply_length(&buffer[offset..])?.map(|length| offset + length));
            }
            Ok(Some(offset))
        }
        other => Err(format!("bad header {:?}", other as char)),
    }
}

/// A blob's total length (`$`, `!`, `=`), checking the CRLF after its payload.
fn blob_length(
    kind: u8,
    header: &str,
    buffer: &[u8],
    body: usize,
) -> Result<Option<usize>, String> {
    if kind == b'$' && header == "-1" {
        return Ok(Some(body)); // $-1: the RESP2 null bulk string
    }
    let length: usize = header
        .parse()
        .map_err(|_| format!("bad length {header:?} after {:?}", kind as char))?;
    let end = body
        .checked_add(length)
        .and_then(|end| end.checked_add(2))
        .ok_or_else(|| format!("absurd length {length}"))?;
    if buffer.len() < end {
        return Ok(None);
    }
    if &buffer[end - 2..end] != b"\r\n" {
        return Err(format!("{length}-byte payload not followed by CRLF"));
    }
    Ok(Some(end))
}

/// An aggregate's element count; `None` for the RESP2 null array `*-1`.
fn parse_count(kind: u8, header: &str) -> Result<Option<usize>, String> {
    if kind == b'*' && header == "-1" {
        return Ok(None);
    }
    header
        .parse()
        .map(Some)
        .map_err(|_| format!("bad count {header:?} after {:?}", kind as char))
}

#[cfg(test)]
mod tests {
    use super::reply_length;

    #[test]
    fn frames_whole_replies_only() {
        let cases: [&[u8]; 9] = [
            b"+PONG\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"_\r\n",
            b"#t\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"%1\r\n+k\r\n~2\r\n,1.5\r\n(12\r\n",
            b"|1\r\n+ttl\r\n:3\r\n=8\r\ntxt:abcd\r\n",
        ];
        for case in cases {
            let mut buffer = case.to_vec();
            buffer.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(reply_length(&buffer), Ok(Some(case.len())), "{case:?}");
            for cut in 0..case.len() {
                assert_eq!(
                    reply_length(&case[..cut]),
                    Ok(None),
                    "{case:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_is_not_resp() {
        assert!(reply_length(b"PONG\r\n").is_err());
        assert!(reply_length(b"\r\n").is_err());
        assert!(reply_length(b"$2\r\nabc\r\n").is_err());
        assert!(reply_length(b"*x\r\n").is_err());
    }
}
