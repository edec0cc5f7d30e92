//! `REFSYNC`: the link between the primaries of a cluster that keeps their server-wide data
//! (catalog entries, promotions) the same. Not for clients: each node sends it to its peers.

use bytes::Bytes;

use crate::args::Args;
use crate::error::CommandError;

/// `REFSYNC SET|DEL|DIGEST|PULL|STATUS ...`.
#[derive(Debug, PartialEq)]
pub enum RefSync {
    /// `REFSYNC SET space key at_ms origin image`: a peer's write of an entry.
    Set(RefSyncChange),
    /// `REFSYNC DEL space key at_ms origin`: a peer's delete of an entry.
    Del(RefSyncChange),
    /// `REFSYNC DIGEST`: the digest of each stamp bucket.
    Digest,
    /// `REFSYNC PULL bucket`: the last write of every entry in one bucket.
    Pull(u64),
    /// `REFSYNC STATUS`: this node's links to its peers.
    Status,
}

/// One entry's last write as a peer sends it.
#[derive(Debug, PartialEq)]
pub struct RefSyncChange {
    /// `catalog` or `promotion`, as sent (the server checks it).
    pub space: Bytes,
    /// The entry's key as the log has it.
    pub key: Bytes,
    /// When it was written (Unix ms).
    pub at_ms: u64,
    /// By which node (its origin number).
    pub origin: u64,
    /// Its image; `None` for a DEL.
    pub image: Option<Bytes>,
}

impl RefSync {
    /// Parses the arguments after `REFSYNC`.
    pub fn parse(args: &mut Args) -> Result<RefSync, CommandError> {
        let sub = args.next_bytes()?;
        let lower = String::from_utf8_lossy(&sub).to_ascii_lowercase();
        let exactly = |args: &Args, count: usize| {
            if args.remaining() == count {
                Ok(())
            } else {
                Err(CommandError::arity(&format!("refsync|{lower}")))
            }
        };
        let command = match lower.as_str() {
            "set" | "del" => {
                exactly(args, if lower == "set" { 5 } else { 4 })?;
                let mut change = RefSyncChange {
                    space: args.next_bytes()?,
                    key: args.next_bytes()?,
                    at_ms: args.next_u64()?,
                    origin: args.next_u64()?,
                    image: None,
                };
                if lower == "set" {
                    change.image = Some(args.next_bytes()?);
                    RefSync::Set(change)
                } else {
                    RefSync::Del(change)
                }
            }
            "digest" => {
                exactly(args, 0)?;
                RefSync::Digest
            }
            "pull" => {
                exactly(args, 1)?;
                RefSync::Pull(args.next_u64()?)
            }
            "status" => {
                exactly(args, 0)?;
                RefSync::Status
            }
            _ => {
                return Err(CommandError::err(format!(
                    "unknown subcommand '{lower}'. Try SET, DEL, DIGEST, PULL, STATUS."
                )))
            }
        };
        args.finish()?;
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<RefSync, CommandError> {
        let items = words
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect();
        RefSync::parse(&mut Args::new(items))
    }

    #[test]
    fn set_del_and_the_rest_parse() {
        let set = parse(&["set", "catalog", "k", "5", "7", "img"]).unwrap();
        let RefSync::Set(change) = set else {
            panic!("a set")
        };
        assert_eq!((change.at_ms, change.origin), (5, 7));
        assert_eq!(change.image.as_deref(), Some(&b"img"[..]));
        assert!(matches!(
            parse(&["DEL", "promotion", "k", "5", "7"]),
            Ok(RefSync::Del(RefSyncChange { image: None, .. }))
        ));
        assert_eq!(parse(&["digest"]), Ok(RefSync::Digest));
        assert_eq!(parse(&["pull", "3"]), Ok(RefSync::Pull(3)));
        assert_eq!(parse(&["status"]), Ok(RefSync::Status));
    }

    #[test]
    fn wrong_arguments_are_refused() {
        assert!(parse(&["set", "catalog", "k", "5", "7"]).is_err());
        assert!(parse(&["del", "catalog", "k", "-5", "7"]).is_err());
        assert!(parse(&["pull"]).is_err());
        assert!(parse(&["digest", "x"]).is_err());
        assert!(parse(&["nope"]).is_err());
    }
}
