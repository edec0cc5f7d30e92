//! RESP on a peer link: requests as arrays of bulk strings, replies read back (RESP2, what a
//! connection speaks until HELLO). A node's client side of its own protocol, for the few
//! internal commands it sends to other nodes.

use bytes::Bytes;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+text`.
    Simple(String),
    /// `-ERR text`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` (null: `$-1`).
    Bulk(Option<Bytes>),
    /// `*n` (null: `*-1`).
    Array(Option<Vec<Value>>),
}

/// Appends one request of `words` to `out`.
pub fn encode(words: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
    for word in words {
        out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
}

/// The reply at the start of `bytes` and the bytes it took; `Ok(None)` while it is incomplete.
pub fn parse(bytes: &[u8]) -> Result<Option<(Value, usize)>, String> {
    parse_at(bytes, 0, 0)
}

/// Arrays nested deeper than this are not a reply of cartd's.
const DEPTH_MAX: usize = 8;

fn parse_at(bytes: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, String> {
    if depth > DEPTH_MAX {
        return Err("a reply nested too deep".into());
    }
    let Some(end) = find_crlf(bytes, at) else {
        return Ok(None);
    };
    let Some(&kind) = bytes.get(at) else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&bytes[at + 1..end]).map_err(|_| "a reply line not UTF-8")?;
    let next = end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| format!("a reply length or integer {line:?}"))
    };
    Ok(Some(match kind {
        b'+' => (Value::Simple(line.to_string()), next),
        b'-' => (Value::Error(line.to_string()), next),
        b':' => (Value::Integer(number()?), next),
        b'$' => {
            let Ok(length) = usize::try_from(number()?) else {
                return Ok(Some((Value::Bulk(None), next)));
            };
            if bytes.len() < next + length + 2 {
                return Ok(None);
            }
            let body = Bytes::copy_from_slice(&bytes[next..next + length]);
            (Value::Bulk(Some(body)), next + length + 2)
        }
        b'*' => {
            let Ok(count) = usize::try_from(number()?) else {
                return Ok(Some((Value::Array(None), next)));
            };
            let mut items = Vec::with_capacity(count.min(1024));
            let mut position = next;
            for _ in 0..count {
                let Some((item, after)) = parse_at(bytes, position, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                position = after;
            }
            (Value::Array(Some(items)), position)
        }
        other => return Err(format!("a reply starting with byte {other}")),
    }))
}

fn find_crlf(bytes: &[u8], from: usize) -> Option<usize> {
    let window = bytes.get(from..)?;
    window
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .map(|offset| from + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let reply = b"*3\r\n:5\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n";
        let (value, used) = parse(reply).unwrap().unwrap();
        assert_eq!(
            value,
            Value::Array(Some(vec![
                Value::Integer(5),
                Value::Bulk(Some(Bytes::from_static(b"abc"))),
                Value::Bulk(None),
            ]))
        );
        assert_eq!(&reply[used..], b"+OK\r\n");
        for cut in 0..used {
            assert_eq!(parse(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(b"-LOADING x\r\n").unwrap().unwrap().0,
            Value::Error("LOADING x".into())
        );
        assert!(parse(b"?\r\n").is_err());
    }

    #[test]
    fn requests_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&[b"REFSYNC", b"PULL", b"7"], &mut out);
        assert_eq!(out, b"*3\r\n$7\r\nREFSYNC\r\n$4\r\nPULL\r\n$1\r\n7\r\n");
    }

    /// A handoff's reply (CART.HANDOFF: the id and the cart), whole or not at all.
    #[test]
    fn a_handoff_reply_parses_in_pieces() {
        let whole = b"*2\r\n$2\r\nid\r\n$4\r\ncart\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        let expected = Value::Array(Some(vec![
            Value::Bulk(Some(Bytes::from_static(b"id"))),
            Value::Bulk(Some(Bytes::from_static(b"cart"))),
        ]));
        assert_eq!(parse(whole), Ok(Some((expected, whole.len()))));
    }

    #[test]
    fn null_status_and_error_replies_parse() {
        for (wire, expected) in [
            (&b"$-1\r\n"[..], Value::Bulk(None)),
            (b"*-1\r\n", Value::Array(None)),
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"-FROZEN cart\r\n", Value::Error("FROZEN cart".into())),
        ] {
            assert_eq!(parse(wire), Ok(Some((expected, wire.len()))));
        }
    }
}
