//! The fuzz corpora, replayed on the stable toolchain: every file committed under
//! `tests/fuzz/corpus/<target>/` goes through the harness its cargo-fuzz target calls (the
//! `fuzzing` modules of the crates), and so do a few thousand inputs derived from them by a
//! fixed-seed generator (bit flips, interesting bytes and integers, truncations, splices), so
//! CI runs each target for a moment without nightly or libFuzzer. See docs/FUZZING.md.
//!
//! `regenerate_seed_corpora` (ignored) rewrites the `gen-*` seeds, which the code itself
//! encodes: `cargo test -p cartd-tests --test fuzz_corpora -- --ignored`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Derived inputs per target, beyond the corpus itself: about a second of each target in a
/// debug build (most derived inputs are refused early, so the cheap targets take many).
const DERIVED_REQUESTS: usize = 40_000;
const DERIVED_COMMANDS: usize = 40_000;
const DERIVED_PROMOTIONS: usize = 100_000;
const DERIVED_IMAGES: usize = 30_000;
/// Every input of these two builds and fills a store.
const DERIVED_FRAMES: usize = 2_000;
const DERIVED_SNAPSHOTS: usize = 2_500;

/// Where a target's corpus is.
fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of a target's corpus, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).expect("a corpus file");
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
}

/// SplitMix64: a small generator with a fixed seed, so every run derives the same inputs.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}

/// Bytes that framing and encodings treat specially.
const INTERESTING_BYTES: &[u8] = b"\x00\x01\x02\x7f\x80\xff\r\n*$:+-0129\\\"'{}[],E";

/// Integers at the edges of what length and count fields hold.
const INTERESTING_WORDS: &[u32] = &[0, 1, 2, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, u32::MAX];

/// One input derived from the corpus: a seed changed by one to three mutations.
fn derive(seeds: &[(String, Vec<u8>)], random: &mut Random) -> Vec<u8> {
    let mut input = seeds[random.below(seeds.len())].1.clone();
    for _ in 0..1 + random.below(3) {
        let at = random.below(input.len());
        match random.below(9) {
            0 if !input.is_empty() => input[at] ^= 1 << random.below(8),
            1 if !input.is_empty() => {
                input[at] = INTERESTING_BYTES[random.below(INTERESTING_BYTES.len())]
            }
            2 => input.truncate(at),
            3 => {
                let other = &seeds[random.below(seeds.len())].1;
                let from = random.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            4 if input.len() >= 4 => {
                let at = random.below(input.len() - 3);
                let word = INTERESTING_WORDS[random.below(INTERESTING_WORDS.len())];
                input[at..at + 4].copy_from_slice(&word.to_le_bytes());
            }
            5 => {
                let length = random.below(16.min(input.len() - at + 1));
                let copy = input[at..at + length].to_vec();
                let to = random.below(input.len() + 1);
                input.splice(to..to, copy);
            }
            6 => {
                let length = random.below(16.min(input.len() - at + 1));
                input.drain(at..at + length);
            }
            7 => {
                let to = random.below(input.len() + 1);
                let byte = INTERESTING_BYTES[random.below(INTERESTING_BYTES.len())];
                input.insert(to, byte);
            }
            _ if !input.is_empty() => input[at] = random.next() as u8,
            _ => input.push(random.next() as u8),
        }
    }
    input
}

/// Runs `harness` on `input`; a panic fails the test naming the input, in hex, and writes it
/// to the test's scratch directory to reproduce with `cargo fuzz run <target> <file>`.
fn run(target: &str, harness: fn(&[u8]), what: &str, input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| harness(input))) {
        let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-failure-{target}"));
        let _ = std::fs::write(&file, input);
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(not a string)");
        panic!(
            "{target}: {what} panicked: {message}\ninput ({} bytes, saved to {}): {}",
            input.len(),
            file.display(),
            hex(input)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// FNV-1a, to give each target a generator seed of its own.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The corpus of `target` and `derived` inputs made from it, through `harness`.
fn replay(target: &str, harness: fn(&[u8]), derived: usize) {
    let started = Instant::now();
    let seeds = corpus(target);
    for (name, bytes) in &seeds {
        run(target, harness, &format!("corpus file {name}"), bytes);
    }
    let mut random = Random(0x00c0_ffee ^ fnv(target));
    for index in 0..derived {
        let input = derive(&seeds, &mut random);
        run(target, harness, &format!("derived input {index}"), &input);
    }
    println!(
        "{target}: {} corpus files and {derived} derived inputs in {:?}",
        seeds.len(),
        started.elapsed()
    );
}

#[test]
fn request_decoder() {
    replay(
        "request_decoder",
        protocol::fuzzing::request_decoder,
        DERIVED_REQUESTS,
    );
}

#[test]
fn command_parser() {
    replay(
        "command_parser",
        protocol::fuzzing::command_parser,
        DERIVED_COMMANDS,
    );
}

#[test]
fn promo_document() {
    replay(
        "promo_document",
        server::fuzzing::promo_document,
        DERIVED_PROMOTIONS,
    );
}

#[test]
fn wal_frame() {
    replay("wal_frame", server::fuzzing::wal_frame, DERIVED_FRAMES);
}

#[test]
fn snapshot() {
    replay("snapshot", server::fuzzing::snapshot, DERIVED_SNAPSHOTS);
}

#[test]
fn cart_image() {
    replay("cart_image", server::fuzzing::cart_image, DERIVED_IMAGES);
}

/// Rewrites the seeds the code encodes (`gen-*` files: cart images and deltas, log frames
/// and segments, snapshots, token blocks) from the current encoders. Run it after an
/// encoding changes, and commit what changed.
#[test]
#[ignore = "rewrites the committed gen-* seeds"]
fn regenerate_seed_corpora() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let seeds = server::fuzzing::seed_inputs(scratch.path());
    let mut targets: Vec<&str> = seeds.iter().map(|(target, _, _)| *target).collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        for entry in std::fs::read_dir(corpus_dir(target)).expect("the corpus directory") {
            let entry = entry.expect("a directory entry");
            if entry.file_name().to_string_lossy().starts_with("gen-") {
                std::fs::remove_file(entry.path()).expect("an old seed removed");
            }
        }
    }
    for (target, name, bytes) in &seeds {
        assert!(name.starts_with("gen-"), "{name}");
        std::fs::write(corpus_dir(target).join(name), bytes).expect("a seed written");
    }
}
