//! The slow log (`SLOWLOG`): the last `slowlog-max-len` commands that took at least
//! `slowlog-log-slower-than` microseconds, as Redis keeps them. A connection captures each
//! request's arguments before it runs ([`ArgvCapture`]: reference counts into the read buffer,
//! in a vector it reuses, so a command that is not slow allocates nothing) and builds an entry
//! only for a slow one, with Redis's truncation and with passwords redacted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use protocol::CommandId;

use crate::limits::{SLOWLOG_ARGS_MAX, SLOWLOG_ARG_BYTES_MAX, SLOWLOG_CLIENT_NAME_BYTES_MAX};

/// One slow command, as SLOWLOG GET shows it.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    /// Rising from 0; RESET does not start it over (as in Redis).
    pub id: u64,
    /// When it was logged, Unix seconds.
    pub unix_s: u64,
    /// How long it took, microseconds.
    pub duration_us: u64,
    /// Its arguments, truncated and redacted.
    pub argv: Vec<Bytes>,
    /// The client's address.
    pub addr: SocketAddr,
    /// The client's name (CLIENT SETNAME) then, empty if none.
    pub client_name: Bytes,
}

/// The log, newest first, at most `slowlog-max-len` entries.
#[derive(Debug, Default)]
pub struct SlowLog {
    entries: Mutex<VecDeque<SlowEntry>>,
    next_id: AtomicU64,
}

impl SlowLog {
    /// Logs a slow command, dropping the oldest entries past `len_max`.
    pub fn push(
        &self,
        duration_us: u64,
        argv: Vec<Bytes>,
        addr: SocketAddr,
        client_name: Bytes,
        len_max: usize,
    ) {
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_s: crate::server::now_ms() / 1000,
            duration_us,
            argv,
            addr,
            client_name: client_name.slice(..client_name.len().min(SLOWLOG_CLIENT_NAME_BYTES_MAX)),
        };
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(len_max);
    }

    /// The newest `count` entries (`None`: all), newest first.
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let entries = self.entries.lock();
        let count = count.unwrap_or(usize::MAX).min(entries.len());
        entries.iter().take(count).cloned().collect()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SLOWLOG RESET.
    pub fn reset(&self) {
        self.entries.lock().clear();
    }

    /// Drops the oldest entries past `len_max` (CONFIG SET slowlog-max-len).
    pub fn trim(&self, len_max: usize) {
        self.entries.lock().truncate(len_max);
    }
}

/// A request's arguments kept while it runs, in case it turns out slow: at most
/// [`SLOWLOG_ARGS_MAX`] reference-counted handles (no bytes copied) and how many there were.
#[derive(Debug, Default)]
pub struct ArgvCapture {
    args: Vec<Bytes>,
    argc: usize,
}

impl ArgvCapture {
    /// Keeps `args` (the first [`SLOWLOG_ARGS_MAX`] of them), replacing what was kept.
    pub fn capture(&mut self, args: &[Bytes]) {
        self.args.clear();
        self.args
            .extend(args.iter().take(SLOWLOG_ARGS_MAX).cloned());
        self.argc = args.len();
    }

    /// Whether a request is kept.
    pub fn is_captured(&self) -> bool {
        self.argc > 0
    }

    /// Lets go of the kept request (its read buffer can then be reused).
    pub fn clear(&mut self) {
        self.args.clear();
        self.argc = 0;
    }

    /// The arguments as a slow log entry keeps them, for the command `id`: past
    /// [`SLOWLOG_ARGS_MAX`] the last kept one says `... (N more arguments)`, an argument over
    /// [`SLOWLOG_ARG_BYTES_MAX`] bytes ends `... (N more bytes)`, and passwords read
    /// `(redacted)`, as in Redis.
    pub fn entry_argv(&self, id: CommandId) -> Vec<Bytes> {
        let shown = if self.argc > SLOWLOG_ARGS_MAX {
            SLOWLOG_ARGS_MAX - 1
        } else {
            self.argc
        };
        let mut argv: Vec<Bytes> = self.args[..shown]
            .iter()
            .enumerate()
            .map(|(at, arg)| {
                if redacted(id, &self.args, at) {
                    Bytes::from_static(b"(redacted)")
                } else if arg.len() > SLOWLOG_ARG_BYTES_MAX {
                    let mut cut = arg[..SLOWLOG_ARG_BYTES_MAX].to_vec();
                    let more = arg.len() - SLOWLOG_ARG_BYTES_MAX;
                    cut.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
                    Bytes::from(cut)
                } else {
                    arg.clone()
                }
            })
            .collect();
        if self.argc > SLOWLOG_ARGS_MAX {
            let more = self.argc - shown;
            argv.push(Bytes::from(format!("... ({more} more arguments)")));
        }
        argv
    }
}

/// Whether the argument at `at` carries a secret the slow log must not keep: AUTH's
/// arguments, HELLO's after AUTH, everything ACL SETUSER is given, and CONFIG SET
/// requirepass's value (Redis redacts the same ones).
pub(crate) fn redacted(id: CommandId, args: &[Bytes], at: usize) -> bool {
    let word_is = |index: usize, word: &[u8]| {
        args.get(index)
            .is_some_and(|arg| arg.eq_ignore_ascii_case(word))
    };
    match id {
        CommandId::Auth => at >= 1,
        CommandId::Hello => args
            .iter()
            .skip(2)
            .position(|arg| arg.eq_ignore_ascii_case(b"AUTH"))
            .is_some_and(|auth| at == auth + 3 || at == auth + 4),
        CommandId::Acl => word_is(1, b"SETUSER") && at >= 2,
        CommandId::Config => {
            word_is(1, b"SET") && at >= 3 && at % 2 == 1 && word_is(at - 1, b"requirepass")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(words: &[&str]) -> ArgvCapture {
        let args: Vec<Bytes> = words
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect();
        let mut capture = ArgvCapture::default();
        capture.capture(&args);
        capture
    }

    #[test]
    fn long_requests_keep_31_arguments_and_say_how_many_more() {
        let words: Vec<String> = (0..42).map(|n| n.to_string()).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let argv = capture(&refs).entry_argv(CommandId::Del);
        assert_eq!(argv.len(), 32);
        assert_eq!(argv[30], "30");
        assert_eq!(argv[31], "... (11 more arguments)");
    }

    #[test]
    fn long_arguments_keep_128_bytes() {
        let long = "x".repeat(200);
        let argv = capture(&["ECHO", &long]).entry_argv(CommandId::Echo);
        assert_eq!(argv[1], format!("{}... (72 more bytes)", "x".repeat(128)));
    }

    #[test]
    fn passwords_are_redacted() {
        let argv = capture(&["AUTH", "u", "pw"]).entry_argv(CommandId::Auth);
        assert_eq!(argv, ["AUTH", "(redacted)", "(redacted)"]);
        let argv = capture(&["HELLO", "3", "AUTH", "u", "pw", "SETNAME", "n"])
            .entry_argv(CommandId::Hello);
        assert_eq!(
            argv,
            [
                "HELLO",
                "3",
                "AUTH",
                "(redacted)",
                "(redacted)",
                "SETNAME",
                "n"
            ]
        );
        let argv = capture(&["config", "set", "requirepass", "pw", "timeout", "0"])
            .entry_argv(CommandId::Config);
        assert_eq!(
            argv,
            ["config", "set", "requirepass", "(redacted)", "timeout", "0"]
        );
        let argv = capture(&["ACL", "SETUSER", "bob", ">pw"]).entry_argv(CommandId::Acl);
        assert_eq!(argv, ["ACL", "SETUSER", "(redacted)", "(redacted)"]);
    }
}
