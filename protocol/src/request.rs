//! Request framing: complete RESP arrays of bulk strings (decoded by `redis-protocol`) and
//! inline commands (`PING\r\n` from telnet or a load balancer's health check).
//!
//! Framing faults are [`FramingError`]s: the server replies `-ERR Protocol error: ...` and closes
//! that one connection, as Redis does. Anything framed correctly is handed on as arguments.

use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::{BytesFrame, Resp2Frame};

/// Longest inline command line, as in Redis.
pub const INLINE_BYTES_MAX: usize = 64 * 1024;

/// Bounds that framing enforces on every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Longest bulk string accepted, in bytes.
    pub bulk_bytes_max: usize,
}

/// Broken framing: the connection cannot be trusted to be in step any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub String);

impl FramingError {
    /// The full error line sent before closing.
    pub fn reply_text(&self) -> String {
        format!("Protocol error: {}", self.0)
    }
}

/// Takes one complete request off the front of `buffer`.
///
/// `Ok(None)`: not complete yet, read more. `Ok(Some(args))` with empty `args`: a blank line or
/// an empty array, which Redis ignores too.
pub fn decode_request(
    buffer: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Vec<Bytes>>, FramingError> {
    match buffer.first() {
        None => Ok(None),
        Some(b'*') => decode_array(buffer, limits),
        Some(_) => decode_inline(buffer),
    }
}

fn decode_array(
    buffer: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Vec<Bytes>>, FramingError> {
    if !is_complete_flat_array(buffer, limits)? {
        return Ok(None);
    }
    let decoded = decode_bytes_mut(buffer)
        .map_err(|error| FramingError(format!("invalid request: {}", error.details())))?;
    let Some((frame, _used, _bytes)) = decoded else {
        return Ok(None);
    };
    let items = match frame {
        BytesFrame::Array(items) => items,
        BytesFrame::Null => return Ok(Some(Vec::new())),
        _ => return Err(FramingError("expected an array of bulk strings".into())),
    };
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        match item {
            BytesFrame::BulkString(data) if data.len() > limits.bulk_bytes_max => {
                return Err(FramingError("invalid bulk length".into()));
            }
            BytesFrame::BulkString(data) => args.push(data),
            other => {
                let kind = char::from(other.kind().to_byte());
                return Err(FramingError(format!("expected '$', got '{kind}'")));
            }
        }
    }
    Ok(Some(args))
}

/// Walks the headers of the array at the front of `buffer` without copying anything: is it
/// complete, and is every element a bulk string within the limit?
///
/// Requests are flat, so a nested array is refused here, before the recursive decoder could be
/// led thousands of levels deep; an oversized bulk is refused from its header, before its bytes
/// are buffered.
fn is_complete_flat_array(buffer: &[u8], limits: &RequestLimits) -> Result<bool, FramingError> {
    let Some((count, mut at)) = header_number(buffer, 0)? else {
        return Ok(false);
    };
    for _ in 0..count.max(0) {
        let Some(&kind) = buffer.get(at) else {
            return Ok(false);
        };
        if kind != b'$' {
            return Err(FramingError(format!(
                "expected '$', got '{}'",
                char::from(kind)
            )));
        }
        let Some((length, data_at)) = header_number(buffer, at)? else {
            return Ok(false);
        };
        let length = usize::try_from(length)
            .ok()
            .filter(|&length| length <= limits.bulk_bytes_max)
            .ok_or_else(|| FramingError("invalid bulk length".into()))?;
        at = data_at + length + 2;
        if at > buffer.len() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads the number of the `*N\r\n` or `$N\r\n` header starting at `at`, and where the next
/// part starts; `None` while the line is incomplete.
fn header_number(buffer: &[u8], at: usize) -> Result<Option<(i64, usize)>, FramingError> {
    const HEADER_BYTES_MAX: usize = 32;
    let line = &buffer[at + 1..buffer.len().min(at + 1 + HEADER_BYTES_MAX)];
    let Some(end) = line.iter().position(|&byte| byte == b'\r') else {
        if line.len() == HEADER_BYTES_MAX {
            return Err(FramingError("invalid length".into()));
        }
        return Ok(None);
    };
    let number = std::str::from_utf8(&line[..end])
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| FramingError("invalid length".into()))?;
    Ok(Some((number, at + 1 + end + 2)))
}

fn decode_inline(buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, FramingError> {
    let Some(newline) = buffer.iter().position(|&byte| byte == b'\n') else {
        if buffer.len() > INLINE_BYTES_MAX {
            return Err(FramingError("too big inline request".into()));
        }
        return Ok(None);
    };
    let line = buffer.split_to(newline + 1);
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    split_inline(line).map(Some)
}

/// Splits an inline line on spaces; `"..."` (with backslash escapes) and `'...'` group words.
fn split_inline(mut line: &[u8]) -> Result<Vec<Bytes>, FramingError> {
    let mut args = Vec::new();
    loop {
        while let Some((&byte, rest)) = line.split_first() {
            if !byte.is_ascii_whitespace() {
                break;
            }
            line = rest;
        }
        let Some(&first) = line.first() else {
            return Ok(args);
        };
        let mut word = Vec::new();
        if first == b'"' || first == b'\'' {
            line.advance(1);
            let mut closed = false;
            while let Some((&byte, rest)) = line.split_first() {
                line = rest;
                if byte == first {
                    closed = true;
                    break;
                }
                if byte == b'\\' && first == b'"' {
                    if let Some((&escaped, rest)) = line.split_first() {
                        line = rest;
                        word.push(match escaped {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            other => other,
                        });
                        continue;
                    }
                }
                word.push(byte);
            }
            let followed_by_space = line.first().is_none_or(|byte| byte.is_ascii_whitespace());
            if !closed || !followed_by_space {
                return Err(FramingError("unbalanced quotes in request".into()));
            }
        } else {
            while let Some((&byte, rest)) = line.split_first() {
                if byte.is_ascii_whitespace() {
                    break;
                }
                word.push(byte);
                line = rest;
            }
        }
        args.push(Bytes::from(word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits { bulk_bytes_max: 16 };

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, FramingError> {
        let mut buffer = BytesMut::from(input);
        let mut requests = Vec::new();
        while let Some(args) = decode_request(&mut buffer, &LIMITS)? {
            requests.push(args);
        }
        Ok(requests)
    }

    #[test]
    fn pipelined_arrays_decode_one_by_one() {
        let requests =
            decode_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$4").unwrap();
        assert_eq!(
            requests,
            vec![
                vec![Bytes::from("PING")],
                vec![Bytes::from("ECHO"), Bytes::from("hi")]
            ]
        );
    }

    #[test]
    fn incomplete_frame_waits_for_more() {
        let mut buffer = BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n$5\r\nhel"[..]);
        assert_eq!(decode_request(&mut buffer, &LIMITS), Ok(None));
        buffer.extend_from_slice(b"lo\r\n");
        assert_eq!(
            decode_request(&mut buffer, &LIMITS).unwrap().unwrap().len(),
            2
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn inline_commands_split_on_spaces_and_quotes() {
        let requests = decode_all(b"PING\r\nECHO \"a b\\n\" 'c d'\n\r\n").unwrap();
        assert_eq!(requests[0], vec![Bytes::from("PING")]);
        assert_eq!(
            requests[1],
            vec![
                Bytes::from("ECHO"),
                Bytes::from("a b\n"),
                Bytes::from("c d")
            ]
        );
        assert!(requests[2].is_empty());
    }

    #[test]
    fn unbalanced_quotes_break_framing() {
        assert!(decode_all(b"ECHO \"abc\r\n").is_err());
    }

    #[test]
    fn oversized_bulk_breaks_framing() {
        let error = decode_all(b"*2\r\n$4\r\nECHO\r\n$17\r\n01234567890123456\r\n").unwrap_err();
        assert_eq!(error.reply_text(), "Protocol error: invalid bulk length");
    }

    #[test]
    fn non_bulk_elements_break_framing() {
        assert!(decode_all(b"*1\r\n:12\r\n").is_err());
        assert!(decode_all(b"*1\r\n*1\r\n$1\r\na\r\n").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_at_the_first_level() {
        let mut nested = b"*1\r\n".repeat(100_000);
        nested.extend_from_slice(b"$4\r\nPING\r\n");
        let error = decode_all(&nested).unwrap_err();
        assert_eq!(error.reply_text(), "Protocol error: expected '$', got '*'");
    }

    #[test]
    fn oversized_bulk_is_refused_from_its_header_alone() {
        let error = decode_all(b"*2\r\n$4\r\nECHO\r\n$99999\r\n").unwrap_err();
        assert_eq!(error.reply_text(), "Protocol error: invalid bulk length");
    }

    #[test]
    fn garbage_lengths_break_framing() {
        assert!(decode_all(&[b"*".as_slice(), &[b'9'; 40]].concat()).is_err());
        assert!(decode_all(b"*x\r\n").is_err());
        assert!(decode_all(b"*1\r\n$-7\r\n").is_err());
    }

    #[test]
    fn endless_inline_line_is_refused() {
        let mut buffer = BytesMut::from(vec![b'a'; INLINE_BYTES_MAX + 1].as_slice());
        assert!(decode_request(&mut buffer, &LIMITS).is_err());
    }
}
