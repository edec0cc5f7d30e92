//! Redis-style glob matching on bytes (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes), used by
//! `SCAN MATCH`, `CONFIG GET` and `COMMAND LIST FILTERBY PATTERN`. The path-oriented glob
//! crates treat `/` specially and work on UTF-8 paths; keys are arbitrary bytes.
//!
//! A pattern is compiled once ([`Pattern::new`]): each class becomes a 256-bit set, runs of
//! `*` become one. Matching is then at most `text × tokens` steps, and a pattern with more
//! single-byte tokens than the text has bytes is rejected at once, so for a key of at most 256
//! bytes it is bounded whatever the pattern (a 500,000-byte class used to be re-read for
//! every byte of every key, freezing a SCAN for seconds).

/// One compiled element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Any run of bytes, empty included.
    Star,
    /// Any one byte.
    Any,
    /// Exactly this byte.
    Byte(u8),
    /// One byte of this set (a negated class is stored negated).
    Class(Box<[u64; 4]>),
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// Tokens that each take exactly one byte.
    single_bytes: usize,
}

impl Pattern {
    /// Compiles `pattern`, in time linear in its length. An unclosed `[` matches a literal
    /// `[` and a trailing `\` a literal `\`, as in Redis.
    pub fn new(pattern: &[u8]) -> Pattern {
        let mut tokens = Vec::new();
        let mut at = 0;
        while at < pattern.len() {
            let token = match pattern[at] {
                b'*' => {
                    at += 1;
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                b'?' => {
                    at += 1;
                    Token::Any
                }
                b'[' => match compile_class(pattern, at) {
                    Some((set, next)) => {
                        at = next;
                        Token::Class(set)
                    }
                    None => {
                        at += 1;
                        Token::Byte(b'[')
                    }
                },
                b'\\' if at + 1 < pattern.len() => {
                    at += 2;
                    Token::Byte(pattern[at - 1])
                }
                byte => {
                    at += 1;
                    Token::Byte(byte)
                }
            };
            tokens.push(token);
        }
        let single_bytes = tokens.iter().filter(|token| **token != Token::Star).count();
        Pattern {
            tokens,
            single_bytes,
        }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &[u8]) -> bool {
        if self.single_bytes > text.len() {
            return false;
        }
        // Iterative matcher with one backtrack point, the last `*`: what a later `*` can
        // match always includes what an earlier one could, so older points are never needed.
        let tokens = &self.tokens;
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            if let Some(token) = tokens.get(p) {
                let step = match token {
                    Token::Star => {
                        star = Some((p, t));
                        p += 1;
                        continue;
                    }
                    Token::Any => true,
                    Token::Byte(byte) => *byte == text[t],
                    Token::Class(set) => contains(set, text[t]),
                };
                if step {
                    p += 1;
                    t += 1;
                    continue;
                }
            }
            match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            }
        }
        tokens[p..].iter().all(|token| *token == Token::Star)
    }
}

/// Whether `text` matches `pattern` (compiles it; compile once to match many texts).
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    Pattern::new(pattern).matches(text)
}

fn contains(set: &[u64; 4], byte: u8) -> bool {
    set[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
}

fn insert(set: &mut [u64; 4], byte: u8) {
    set[usize::from(byte >> 6)] |= 1 << (byte & 63);
}

/// Compiles the class starting at `pattern[open] == b'['` into the set of bytes it matches;
/// returns it and where the pattern continues, or `None` for an unclosed class.
fn compile_class(pattern: &[u8], open: usize) -> Option<(Box<[u64; 4]>, usize)> {
    let mut set = Box::new([0u64; 4]);
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            insert(&mut set, pattern[i + 1]);
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (low, high) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            for byte in low..=high {
                insert(&mut set, byte);
            }
            i += 3;
        } else {
            insert(&mut set, pattern[i]);
            i += 1;
        }
    }
    if i >= pattern.len() {
        return None;
    }
    if negate {
        for word in set.iter_mut() {
            *word = !*word;
        }
    }
    Some((set, i + 1))
}

#[cfg(test)]
mod tests {
    use super::{matches, Pattern};

    #[test]
    fn redis_glob_examples() {
        assert!(matches(b"cart:*", b"cart:42"));
        assert!(!matches(b"cart:*", b"car:42"));
        assert!(matches(b"h?llo", b"hello"));
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-b]llo", b"hbllo"));
        assert!(matches(b"h[b-a]llo", b"hallo"));
        assert!(matches(b"*", b""));
        assert!(matches(b"a\\*b", b"a*b"));
        assert!(!matches(b"a\\*b", b"axb"));
        assert!(matches(b"*guest*", b"cart:guest:1"));
        assert!(!matches(b"max*x", b"max"));
        assert!(matches(b"a[\\]]b", b"a]b"));
        assert!(matches(b"**a**", b"xay"));
        assert!(!matches(b"[abc", b"a"));
        assert!(matches(b"[abc", b"[abc"));
    }

    /// The pattern: a 500,000-byte class after a `*`, against keys of up to 256
    /// bytes. Compiling reads the class once; each match is then a few hundred steps (the
    /// step count is what is bounded here, not the time).
    #[test]
    fn a_huge_class_is_read_once() {
        let mut pattern = b"*[".to_vec();
        pattern.extend(std::iter::repeat_n(b'x', 500_000));
        pattern.extend_from_slice(b"]z");
        let compiled = Pattern::new(&pattern);
        assert_eq!(compiled.tokens.len(), 3);
        let key = vec![b'x'; 256];
        assert!(!compiled.matches(&key));
        let mut hit = key.clone();
        hit.push(b'z');
        assert!(compiled.matches(&hit));
    }

    /// A pattern of more single-byte tokens than the text has bytes never matches, and is
    /// refused before any step: `*a*a*a...` of 250,000 `a`s against a 256-byte key.
    #[test]
    fn too_long_a_pattern_is_refused_at_once() {
        let pattern = b"*a".repeat(250_000);
        let compiled = Pattern::new(&pattern);
        assert!(!compiled.matches(&[b'a'; 256]));
        assert!(Pattern::new(&b"*a".repeat(3)).matches(b"xaxaxa"));
    }

    proptest::proptest! {
        /// Agrees with a plain recursive matcher (exponential, so only on small inputs).
        #[test]
        fn agrees_with_a_reference_matcher(
            pattern in proptest::collection::vec(proptest::sample::select(b"ab*?[]^-\\".to_vec()), 0..8),
            text in proptest::collection::vec(proptest::sample::select(b"ab[]*".to_vec()), 0..8),
        ) {
            proptest::prop_assert_eq!(
                Pattern::new(&pattern).matches(&text),
                reference(&Pattern::new(&pattern).tokens, &text)
            );
        }
    }

    fn reference(tokens: &[super::Token], text: &[u8]) -> bool {
        use super::Token;
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Token::Star, rest)) => {
                (0..=text.len()).any(|skip| reference(rest, &text[skip..]))
            }
            Some((token, rest)) => match text.split_first() {
                None => false,
                Some((&byte, text_rest)) => {
                    let fits = match token {
                        Token::Any => true,
                        Token::Byte(expected) => *expected == byte,
                        Token::Class(set) => super::contains(set, byte),
                        Token::Star => unreachable!(),
                    };
                    fits && reference(rest, text_rest)
                }
            },
        }
    }
}
