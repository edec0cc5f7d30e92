//! Fuzz harnesses for the wire layer: one function per fuzz target, each taking any bytes and
//! panicking only when a property of the code under test fails. The cargo-fuzz targets in
//! `tests/fuzz/` call them, and so does the stable corpus replay test
//! (`tests/tests/fuzz_corpora.rs`), so CI runs exactly what the fuzzer runs. See
//! docs/FUZZING.md.

use bytes::{Bytes, BytesMut};

use crate::request::INLINE_BYTES_MAX;
use crate::{Command, CommandSpec, Protocol, Reply, RequestDecoder, RequestLimits};

/// Longest bulk string the `request_decoder` harness accepts: small, so that the limit is
/// reachable from small inputs.
const BULK_BYTES_MAX: usize = 1024;

/// What feeding one input to a fresh decoder produced: the requests, the framing error that
/// ended it (if any), and what was still held at the end (the unread buffer and the bytes the
/// decoder kept of a partial request).
#[derive(Debug, PartialEq)]
struct Decoded {
    requests: Vec<Vec<Bytes>>,
    error: Option<String>,
    leftover: Vec<u8>,
    pending: usize,
}

/// Feeds `input` to a fresh decoder in pieces of the lengths `cuts` yields (the last piece
/// takes whatever remains when `cuts` runs out), decoding everything complete after each piece
/// as a connection does after each read.
fn decode_in_pieces(
    input: &[u8],
    limits: &RequestLimits,
    mut cuts: impl Iterator<Item = usize>,
) -> Decoded {
    let mut decoder = RequestDecoder::new();
    let mut buffer = BytesMut::new();
    let mut requests = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let piece = cuts.next().unwrap_or(input.len()).max(1);
        let end = input.len().min(at + piece);
        buffer.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            match decoder.decode(&mut buffer, limits) {
                Ok(Some(args)) => requests.push(args),
                Ok(None) => break,
                Err(error) => {
                    return Decoded {
                        requests,
                        error: Some(error.reply_text()),
                        leftover: Vec::new(),
                        pending: 0,
                    }
                }
            }
        }
    }
    Decoded {
        requests,
        error: None,
        leftover: buffer.to_vec(),
        pending: decoder.pending_bytes(),
    }
}

/// A request as a client sends it: an array of bulk strings.
fn encode_request(args: &[Bytes]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A small deterministic generator (SplitMix64), for piece lengths derived from the input.
struct SplitMix(u64);

impl Iterator for SplitMix {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Some(z ^ (z >> 31))
    }
}

/// FNV-1a of `data`: a seed that follows the input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `request_decoder`: `data` is what a connection receives. It is decoded whole, one byte at a
/// time, and in pieces of pseudo-random lengths (1..=17, derived from the input): all three
/// must give the same requests, the same framing error and the same leftover state, since the
/// decoder is incremental. Every decoded request, re-encoded as a RESP array, decodes back to
/// itself alone.
pub fn request_decoder(data: &[u8]) {
    // Past this many bytes without a newline an inline line is refused; fed whole, a longer line
    // with its newline would be taken. Fuzz inputs are far shorter; the replay test's too.
    let data = &data[..data.len().min(INLINE_BYTES_MAX)];
    let limits = RequestLimits {
        bulk_bytes_max: BULK_BYTES_MAX,
    };
    let whole = decode_in_pieces(data, &limits, std::iter::empty());
    let bytewise = decode_in_pieces(data, &limits, std::iter::repeat(1));
    assert_eq!(whole, bytewise, "fed byte by byte");
    let cuts = SplitMix(fnv(data)).map(|random| 1 + (random % 17) as usize);
    let pieces = decode_in_pieces(data, &limits, cuts);
    assert_eq!(whole, pieces, "fed in pieces");
    assert!(
        whole.requests.len() <= data.len(),
        "every request takes a byte at least"
    );
    let unlimited = RequestLimits {
        bulk_bytes_max: usize::MAX,
    };
    for request in &whole.requests {
        let encoded = encode_request(request);
        let again = decode_in_pieces(&encoded, &unlimited, std::iter::empty());
        assert_eq!(again.error, None, "a re-encoded request is well framed");
        assert_eq!(again.requests, vec![request.clone()], "re-encoded request");
        assert!(again.leftover.is_empty() && again.pending == 0);
    }
}

/// Whether `line` is one RESP error line: `-...\r\n` with no other CR or LF.
fn is_one_error_line(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    body.first() == Some(&b'-') && !body.iter().any(|&byte| byte == b'\r' || byte == b'\n')
}

/// `command_parser`: `data` is split on 0x00 bytes into a request's words (the first is the
/// command name) and parsed. Parsing is deterministic; the name's case does not matter; a
/// parsed command is the command its name names, its word count fits the table's arity and its
/// key positions are inside the request; an error encodes as exactly one error line in RESP2
/// and RESP3 whatever bytes it quotes. Glob patterns a command carries (SCAN MATCH, CONFIG
/// GET) are compiled and matched against the request's own words.
pub fn command_parser(data: &[u8]) {
    let words: Vec<Bytes> = data
        .split(|&byte| byte == 0)
        .map(Bytes::copy_from_slice)
        .collect();
    let parsed = Command::parse(words.clone());
    assert_eq!(
        parsed,
        Command::parse(words.clone()),
        "parsing is deterministic"
    );
    let spec = CommandSpec::lookup(&words[0]);
    if spec.is_some() {
        for name in [words[0].to_ascii_uppercase(), words[0].to_ascii_lowercase()] {
            let mut other = words.clone();
            other[0] = Bytes::from(name);
            assert_eq!(parsed, Command::parse(other), "the name's case matters");
        }
    }
    match &parsed {
        Ok(command) => {
            let spec = spec.expect("a parsed command is in the table");
            assert_eq!(command.id(), spec.id, "parsed as another command");
            assert!(spec.arity_allows(words.len()), "parsed against its arity");
            assert!(
                spec.all_key_positions(words.len())
                    .all(|at| at > 0 && at < words.len()),
                "a key position outside the request"
            );
            let patterns: Vec<&Bytes> = match command {
                Command::Scan(scan) => scan.pattern.iter().collect(),
                Command::ConfigGet(patterns) => patterns.iter().collect(),
                _ => Vec::new(),
            };
            for pattern in patterns {
                let compiled = crate::glob::Pattern::new(pattern);
                for word in words.iter().take(8) {
                    let _ = compiled.matches(word);
                }
                // A pattern matches itself when it has no special bytes.
                if !pattern
                    .iter()
                    .any(|byte| matches!(byte, b'*' | b'?' | b'[' | b'\\'))
                {
                    assert!(
                        compiled.matches(pattern),
                        "a literal pattern matches itself"
                    );
                }
            }
            let _ = format!("{command:?}");
        }
        Err(error) => {
            let reply = Reply::from(error.clone());
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let mut out = BytesMut::new();
                reply.encode(protocol, &mut out);
                assert!(is_one_error_line(&out), "not one error line: {out:?}");
            }
            let _ = reply.to_json();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_take_empty_and_simple_inputs() {
        request_decoder(b"");
        request_decoder(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*1\r\n$4\r\nPI");
        command_parser(b"");
        command_parser(b"PING");
        command_parser(b"scan\x000\x00MATCH\x00cart:*");
        command_parser(b"nope\x00\r\nDEL x");
    }
}
