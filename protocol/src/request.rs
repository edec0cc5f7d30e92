//! Request framing: RESP arrays of bulk strings and inline commands (`PING\r\n` from telnet
//! or a load balancer's health check), decoded incrementally: a request that arrives in many
//! reads is parsed once, resuming where the last read stopped (re-walking it from its start
//! on every read made a request trickled in 1 MB of tiny pieces cost seconds of CPU).
//!
//! Framing faults are [`FramingError`]s: the server replies `-ERR Protocol error: ...` and closes
//! that one connection, as Redis does. Anything framed correctly is handed on as arguments.
//! Every line and every bulk string must end in CRLF: bytes left over after a bulk's declared
//! length are a framing error, never the start of another command (request smuggling).

use bytes::{Buf, Bytes, BytesMut};

/// Longest inline command line, as in Redis.
pub const INLINE_BYTES_MAX: usize = 64 * 1024;

/// Most elements in one request array, as Redis (`invalid multibulk length` past it).
pub const ARGS_MAX: i64 = 1024 * 1024;

/// Longest `*N` or `$N` header line.
const HEADER_BYTES_MAX: usize = 32;

/// Elements reserved up front for an array, whatever its header claims.
const ARGS_PREALLOCATED_MAX: usize = 64;

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

/// A connection's decoder: what it has parsed of a request that is not complete yet.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    /// An array whose elements are still arriving.
    partial: Option<PartialArray>,
    /// Bytes of an incomplete inline line already searched for its newline.
    inline_scanned: usize,
}

#[derive(Debug)]
struct PartialArray {
    /// Elements still to come.
    remaining: usize,
    args: Vec<Bytes>,
    /// Bytes of the elements parsed so far.
    bytes: usize,
}

impl RequestDecoder {
    /// A decoder with nothing parsed.
    pub fn new() -> RequestDecoder {
        RequestDecoder::default()
    }

    /// Takes one complete request off the front of `buffer`, keeping what it parsed of an
    /// incomplete one (the bytes it used are gone from `buffer`).
    ///
    /// `Ok(None)`: not complete yet, read more. `Ok(Some(args))` with empty `args`: a blank
    /// line or an empty array, which Redis ignores too.
    pub fn decode(
        &mut self,
        buffer: &mut BytesMut,
        limits: &RequestLimits,
    ) -> Result<Option<Vec<Bytes>>, FramingError> {
        if self.partial.is_none() {
            match buffer.first() {
                None => return Ok(None),
                Some(b'*') => {
                    let Some((count, used)) = header_number(buffer)? else {
                        return Ok(None);
                    };
                    if count > ARGS_MAX {
                        return Err(FramingError("invalid multibulk length".into()));
                    }
                    buffer.advance(used);
                    if count <= 0 {
                        return Ok(Some(Vec::new()));
                    }
                    let remaining = count as usize;
                    self.partial = Some(PartialArray {
                        remaining,
                        args: Vec::with_capacity(remaining.min(ARGS_PREALLOCATED_MAX)),
                        bytes: used,
                    });
                }
                Some(_) => return self.decode_inline(buffer),
            }
        }
        let partial = self.partial.as_mut().expect("an array is being parsed");
        while partial.remaining > 0 {
            let Some(&kind) = buffer.first() else {
                return Ok(None);
            };
            if kind != b'$' {
                return Err(FramingError(format!(
                    "expected '$', got '{}'",
                    char::from(kind)
                )));
            }
            let Some((length, header)) = header_number(buffer)? else {
                return Ok(None);
            };
            let length = usize::try_from(length)
                .ok()
                .filter(|&length| length <= limits.bulk_bytes_max)
                .ok_or_else(|| FramingError("invalid bulk length".into()))?;
            if buffer.len() < header + length + 2 {
                // The header is parsed again when the rest comes: it is at most 32 bytes.
                // Nothing is reserved for the declared length: a header alone is cheap to send.
                return Ok(None);
            }
            if &buffer[header + length..header + length + 2] != b"\r\n" {
                return Err(FramingError("expected CRLF after a bulk string".into()));
            }
            buffer.advance(header);
            partial.args.push(buffer.split_to(length).freeze());
            buffer.advance(2);
            partial.bytes += header + length + 2;
            partial.remaining -= 1;
        }
        Ok(self.partial.take().map(|partial| partial.args))
    }

    /// Bytes this decoder holds of a request not complete yet (beyond what is still in the
    /// read buffer).
    pub fn pending_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |partial| partial.bytes)
    }

    fn decode_inline(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, FramingError> {
        let from = self.inline_scanned.min(buffer.len());
        let Some(newline) = buffer[from..].iter().position(|&byte| byte == b'\n') else {
            if buffer.len() > INLINE_BYTES_MAX {
                return Err(FramingError("too big inline request".into()));
            }
            self.inline_scanned = buffer.len();
            return Ok(None);
        };
        self.inline_scanned = 0;
        let line = buffer.split_to(from + newline + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_inline(line).map(Some)
    }
}

/// Reads the number of the `*N\r\n` or `$N\r\n` header at the front of `buffer` and the bytes
/// the header takes; `None` while the line is incomplete.
fn header_number(buffer: &[u8]) -> Result<Option<(i64, usize)>, FramingError> {
    let line = &buffer[1..buffer.len().min(1 + HEADER_BYTES_MAX)];
    let Some(end) = line.iter().position(|&byte| byte == b'\r') else {
        if line.len() == HEADER_BYTES_MAX {
            return Err(FramingError("invalid length".into()));
        }
        return Ok(None);
    };
    let Some(&after) = buffer.get(1 + end + 1) else {
        return Ok(None);
    };
    if after != b'\n' {
        return Err(FramingError("expected CRLF after a length".into()));
    }
    let number = std::str::from_utf8(&line[..end])
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| FramingError("invalid length".into()))?;
    Ok(Some((number, 1 + end + 2)))
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
        let mut decoder = RequestDecoder::new();
        let mut requests = Vec::new();
        while let Some(args) = decoder.decode(&mut buffer, &LIMITS)? {
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
        let mut decoder = RequestDecoder::new();
        assert_eq!(decoder.decode(&mut buffer, &LIMITS), Ok(None));
        buffer.extend_from_slice(b"lo\r\n");
        assert_eq!(
            decoder.decode(&mut buffer, &LIMITS).unwrap().unwrap().len(),
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

    /// `$3\r\nabcDEL cart:x\r\n`: the bytes after the declared length used to run as an
    /// inline command (request smuggling behind a proxy that frames differently).
    #[test]
    fn bytes_after_a_bulk_are_not_a_command() {
        let error = decode_all(b"*2\r\n$4\r\nECHO\r\n$3\r\nabcDEL cart:x\r\n").unwrap_err();
        assert_eq!(
            error.reply_text(),
            "Protocol error: expected CRLF after a bulk string"
        );
        assert!(decode_all(b"*1\r\n$4\r\nPING\n\n").is_err());
        assert!(decode_all(b"*1\r$4\r\nPING\r\n").is_err());
        assert!(decode_all(b"*1\r\n$4\rxPING\r\n").is_err());
    }

    #[test]
    fn arrays_longer_than_redis_allows_are_refused() {
        let error = decode_all(format!("*{}\r\n", ARGS_MAX + 1).as_bytes()).unwrap_err();
        assert_eq!(
            error.reply_text(),
            "Protocol error: invalid multibulk length"
        );
    }

    /// A request arriving a few bytes at a time is parsed once: each byte of input is looked
    /// at a bounded number of times (the work counted here is what stays in the buffer each
    /// time the decoder is called, which re-walking from the start made quadratic).
    #[test]
    fn a_trickled_request_is_parsed_in_linear_work() {
        const ELEMENTS: usize = 200_000;
        let mut input = format!("*{ELEMENTS}\r\n").into_bytes();
        for _ in 0..ELEMENTS {
            input.extend_from_slice(b"$0\r\n\r\n");
        }
        let mut decoder = RequestDecoder::new();
        let mut buffer = BytesMut::new();
        let mut looked_at = 0;
        let mut decoded = None;
        for piece in input.chunks(3) {
            buffer.extend_from_slice(piece);
            looked_at += buffer.len();
            if let Some(args) = decoder.decode(&mut buffer, &LIMITS).unwrap() {
                decoded = Some(args);
            }
        }
        assert_eq!(decoded.map(|args| args.len()), Some(ELEMENTS));
        assert!(buffer.is_empty());
        assert!(
            looked_at < 4 * input.len(),
            "{looked_at} bytes looked at for {} sent",
            input.len()
        );
    }

    #[test]
    fn pending_bytes_count_what_a_partial_request_holds() {
        let mut decoder = RequestDecoder::new();
        let mut buffer = BytesMut::from(&b"*3\r\n$4\r\nECHO\r\n$2\r\nhi\r\n$5\r\nhe"[..]);
        assert_eq!(decoder.decode(&mut buffer, &LIMITS), Ok(None));
        assert_eq!(decoder.pending_bytes(), 4 + 10 + 8);
        assert_eq!(&buffer[..], b"$5\r\nhe");
        buffer.extend_from_slice(b"llo\r\n");
        let args = decoder.decode(&mut buffer, &LIMITS).unwrap().unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("ECHO"), Bytes::from("hi"), Bytes::from("hello")]
        );
        assert_eq!(decoder.pending_bytes(), 0);
    }

    proptest::proptest! {
        /// Any pipeline of requests, cut into reads anywhere, decodes to the same requests as
        /// `redis-protocol` decodes the whole of it.
        #[test]
        fn any_split_decodes_like_redis_protocol(
            requests in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..12), 0..5),
                1..6,
            ),
            cuts in proptest::collection::vec(1usize..9, 1..40),
        ) {
            let mut input = Vec::new();
            for request in &requests {
                input.extend_from_slice(format!("*{}\r\n", request.len()).as_bytes());
                for arg in request {
                    input.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                    input.extend_from_slice(arg);
                    input.extend_from_slice(b"\r\n");
                }
            }
            let mut expected = Vec::new();
            let mut whole = BytesMut::from(&input[..]);
            while let Some((frame, _, _)) =
                redis_protocol::resp2::decode::decode_bytes_mut(&mut whole).unwrap()
            {
                let redis_protocol::resp2::types::BytesFrame::Array(items) = frame else {
                    panic!("arrays only");
                };
                expected.push(
                    items
                        .into_iter()
                        .map(|item| match item {
                            redis_protocol::resp2::types::BytesFrame::BulkString(data) => data,
                            other => panic!("{other:?}"),
                        })
                        .collect::<Vec<_>>(),
                );
            }
            let limits = RequestLimits { bulk_bytes_max: 64 };
            let mut decoder = RequestDecoder::new();
            let mut buffer = BytesMut::new();
            let mut decoded = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < input.len() {
                let end = (at + cut.next().unwrap()).min(input.len());
                buffer.extend_from_slice(&input[at..end]);
                at = end;
                while let Some(args) = decoder.decode(&mut buffer, &limits).unwrap() {
                    decoded.push(args);
                }
            }
            proptest::prop_assert_eq!(decoded, expected);
            proptest::prop_assert!(buffer.is_empty());
        }
    }

    #[test]
    fn endless_inline_line_is_refused() {
        let mut buffer = BytesMut::from(vec![b'a'; INLINE_BYTES_MAX + 1].as_slice());
        assert!(RequestDecoder::new().decode(&mut buffer, &LIMITS).is_err());
    }
}
