//! Replies and their encoding for RESP2 and RESP3.
//!
//! A [`Reply`] says what to answer, independent of the connection's protocol version; the
//! encoder decides how: RESP3 maps and booleans become flat arrays and 0/1 integers in RESP2,
//! nulls become `$-1`. Encoding writes straight into the connection's write buffer. The
//! `redis-protocol` crate's encoders would need a second tree of its frame types per reply
//! (with a hash map per RESP3 map) only to walk it again; the unit tests here decode our output
//! with that crate instead, so the wire stays checked by an independent implementation.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CommandError;

/// The RESP version a connection speaks (`HELLO 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, every connection's start.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// The version number as HELLO and CLIENT LIST show it.
    pub fn number(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply, before it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A status line such as `+OK`.
    Simple(Cow<'static, str>),
    /// An error line.
    Error(CommandError),
    /// An integer.
    Integer(i64),
    /// A bulk (blob) string.
    Bulk(Bytes),
    /// The null reply.
    Null,
    /// The null array (RESP2 `*-1`, as EXEC replies when a WATCHed key changed; RESP3 null).
    NullArray,
    /// A boolean (RESP2: integer 0/1).
    Bool(bool),
    /// A floating-point number (RESP3 double; RESP2: its decimal text as a bulk string, as
    /// Redis sends MEMORY STATS ratios). Not a finite number: `inf`, `-inf` or `nan`.
    Double(f64),
    /// An array.
    Array(Vec<Reply>),
    /// A map (RESP2: flat array of alternating keys and values, as HGETALL replies).
    Map(Vec<(Reply, Reply)>),
    /// Out-of-band data (a pub/sub message, an invalidation): a RESP3 push, a plain array in
    /// RESP2 (where a subscribed connection reads nothing else).
    Push(Vec<Reply>),
    /// Several replies to one request, one after another: SUBSCRIBE confirms each channel
    /// with its own reply, as Redis does.
    Sequence(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// A bulk string from static text (no allocation).
    pub fn from_static(text: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(text.as_bytes()))
    }

    /// A bulk string from owned text.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(text.into()))
    }

    /// Whether this reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply for `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Simple(text) => {
                out.put_u8(b'+');
                put_line_safe(out, text.as_bytes());
            }
            Reply::Error(error) => {
                out.put_u8(b'-');
                out.put_slice(error.code.as_str().as_bytes());
                out.put_u8(b' ');
                put_line_safe(out, error.message.as_bytes());
            }
            Reply::Integer(value) => put_header(out, b':', *value),
            Reply::Bulk(data) => {
                put_header(out, b'$', data.len() as i64);
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Reply::Null => match protocol {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::NullArray => match protocol {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Bool(value) => match protocol {
                Protocol::Resp2 => put_header(out, b':', i64::from(*value)),
                Protocol::Resp3 => out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
            },
            Reply::Double(value) => {
                let text = double_text(*value);
                match protocol {
                    Protocol::Resp2 => {
                        put_header(out, b'$', text.len() as i64);
                        out.put_slice(text.as_bytes());
                    }
                    Protocol::Resp3 => {
                        out.put_u8(b',');
                        out.put_slice(text.as_bytes());
                    }
                }
                out.put_slice(b"\r\n");
            }
            Reply::Array(items) => {
                put_header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Push(items) => encode_push(items, protocol, out),
            Reply::Sequence(replies) => {
                for reply in replies {
                    reply.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => put_header(out, b'*', 2 * pairs.len() as i64),
                    Protocol::Resp3 => put_header(out, b'%', pairs.len() as i64),
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
        }
    }

    /// The same structure as JSON (`FORMAT JSON`): maps become objects, bulk strings become
    /// strings (invalid UTF-8 replaced), booleans stay booleans.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Reply::Simple(text) => Value::String(text.to_string()),
            Reply::Error(error) => Value::String(error.to_string()),
            Reply::Integer(value) => Value::from(*value),
            Reply::Bulk(data) => Value::String(String::from_utf8_lossy(data).into_owned()),
            Reply::Null | Reply::NullArray => Value::Null,
            Reply::Bool(value) => Value::Bool(*value),
            Reply::Double(value) => {
                serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number)
            }
            Reply::Array(items) | Reply::Push(items) | Reply::Sequence(items) => {
                Value::Array(items.iter().map(Reply::to_json).collect())
            }
            Reply::Map(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(key, value)| (key.json_key(), value.to_json()))
                    .collect(),
            ),
        }
    }

    fn json_key(&self) -> String {
        match self {
            Reply::Simple(text) => text.to_string(),
            Reply::Bulk(data) => String::from_utf8_lossy(data).into_owned(),
            other => other.to_json().to_string(),
        }
    }
}

impl From<CommandError> for Reply {
    fn from(error: CommandError) -> Reply {
        Reply::Error(error)
    }
}

/// A double as RESP3 spells it: the shortest decimal that reads back the same, or `inf`,
/// `-inf`, `nan`.
fn double_text(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{value}")
    }
}

/// A push: `>` in RESP3, a plain array in RESP2.
fn encode_push(items: &[Reply], protocol: Protocol, out: &mut BytesMut) {
    let kind = match protocol {
        Protocol::Resp2 => b'*',
        Protocol::Resp3 => b'>',
    };
    put_header(out, kind, items.len() as i64);
    for item in items {
        item.encode(protocol, out);
    }
}

fn put_header(out: &mut BytesMut, kind: u8, value: i64) {
    let mut digits = itoa::Buffer::new();
    out.put_u8(kind);
    out.put_slice(digits.format(value).as_bytes());
    out.put_slice(b"\r\n");
}

/// Simple strings and errors are one line: a CR or LF inside would break the framing for the
/// client, so they become spaces.
fn put_line_safe(out: &mut BytesMut, text: &[u8]) {
    if text.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
        out.extend(text.iter().map(|&byte| {
            if byte == b'\r' || byte == b'\n' {
                b' '
            } else {
                byte
            }
        }));
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn encoded(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        out.to_vec()
    }

    fn sample() -> Reply {
        Reply::Map(vec![
            (Reply::from_static("id"), Reply::from_static("cart:1")),
            (Reply::from_static("version"), Reply::Integer(3)),
            (Reply::from_static("price_changed"), Reply::Bool(true)),
            (Reply::from_static("items"), Reply::Array(vec![Reply::Null])),
        ])
    }

    #[test]
    fn resp2_flattens_maps_and_booleans() {
        let bytes = encoded(&sample(), Protocol::Resp2);
        assert_eq!(
            bytes,
            b"*8\r\n$2\r\nid\r\n$6\r\ncart:1\r\n$7\r\nversion\r\n:3\r\n$13\r\nprice_changed\r\n:1\r\n$5\r\nitems\r\n*1\r\n$-1\r\n"
        );
        let (frame, used) = redis_protocol::resp2::decode::decode(&bytes)
            .expect("valid RESP2")
            .expect("complete");
        assert_eq!(used, bytes.len());
        assert!(
            matches!(frame, redis_protocol::resp2::types::OwnedFrame::Array(items) if items.len() == 8)
        );
    }

    #[test]
    fn resp3_keeps_maps_booleans_and_nulls() {
        let bytes = encoded(&sample(), Protocol::Resp3);
        assert!(bytes.starts_with(b"%4\r\n"));
        assert!(bytes.ends_with(b"*1\r\n_\r\n"));
        let decoded = redis_protocol::resp3::decode::complete::decode(&bytes)
            .expect("valid RESP3")
            .expect("complete");
        assert_eq!(decoded.1, bytes.len());
    }

    #[test]
    fn errors_and_statuses_stay_on_one_line() {
        let error = Reply::Error(CommandError::new(ErrorCode::Limit, "two\r\nlines"));
        assert_eq!(encoded(&error, Protocol::Resp2), b"-LIMIT two  lines\r\n");
        assert_eq!(encoded(&Reply::ok(), Protocol::Resp3), b"+OK\r\n");
    }

    #[test]
    fn pushes_are_arrays_in_resp2_and_pushes_in_resp3() {
        let push = Reply::Push(vec![
            Reply::from_static("message"),
            Reply::from_static("ch"),
            Reply::from_static("hi"),
        ]);
        let resp2 = encoded(&push, Protocol::Resp2);
        assert_eq!(resp2, b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        let resp3 = encoded(&push, Protocol::Resp3);
        assert_eq!(&resp3[..1], b">");
        assert_eq!(&resp3[1..], &resp2[1..]);
        let decoded = redis_protocol::resp3::decode::complete::decode(&resp3)
            .expect("valid RESP3")
            .expect("complete");
        assert!(matches!(
            decoded.0,
            redis_protocol::resp3::types::OwnedFrame::Push { .. }
        ));
        let two = Reply::Sequence(vec![Reply::ok(), Reply::Integer(1)]);
        assert_eq!(encoded(&two, Protocol::Resp3), b"+OK\r\n:1\r\n");
    }

    #[test]
    fn json_mirrors_the_structure() {
        let json = sample().to_json();
        assert_eq!(json["id"], "cart:1");
        assert_eq!(json["version"], 3);
        assert_eq!(json["price_changed"], true);
        assert!(json["items"][0].is_null());
    }
}
