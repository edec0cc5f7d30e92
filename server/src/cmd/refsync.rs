//! `REFSYNC`: what a peer primary's link asks of this node (`crate::peers` is the other end).

use bytes::Bytes;
use protocol::{CommandError, RefSync, RefSyncChange, Reply};

use crate::peers::link::space_named;
use crate::server::Server;
use crate::store::shared::SharedChange;
use crate::store::stamps::Stamp;

/// Runs one `REFSYNC` request. Cluster nodes only.
pub fn run(command: RefSync, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let Some(peers) = &server.peers else {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    };
    Ok(match command {
        RefSync::Set(change) | RefSync::Del(change) => {
            let change = shared_change(change)?;
            let applied = server
                .store
                .apply_shared(&change, now)
                .map_err(CommandError::err)?;
            Reply::Integer(i64::from(applied))
        }
        RefSync::Digest => {
            let digests = server.store.shared_digests().into_iter();
            // Bits as they are: the peer compares them, it does not count with them.
            Reply::Array(
                digests
                    .map(|digest| Reply::Integer(digest as i64))
                    .collect(),
            )
        }
        RefSync::Pull(bucket) => {
            let entries = usize::try_from(bucket)
                .ok()
                .and_then(|bucket| server.store.shared_bucket(bucket))
                .ok_or_else(|| CommandError::err(format!("no stamp bucket {bucket}")))?;
            Reply::Array(entries.into_iter().map(pulled_entry).collect())
        }
        RefSync::Status => peers.status(&server.layout().expect("peers run in cluster mode")),
    })
}

fn shared_change(change: RefSyncChange) -> Result<SharedChange, CommandError> {
    let space = space_named(&change.space).ok_or_else(|| {
        CommandError::err("the space must be catalog or promotion (gift cards are not shared)")
    })?;
    if change.key.is_empty() {
        return Err(CommandError::err("an empty key"));
    }
    Ok(SharedChange {
        space,
        key: change.key,
        stamp: Stamp {
            at_ms: change.at_ms,
            origin: change.origin,
        },
        image: change.image,
    })
}

fn pulled_entry(change: SharedChange) -> Reply {
    let integer = |value: u64| Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX));
    Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(
            crate::peers::link::space_name(change.space).as_bytes(),
        )),
        Reply::Bulk(change.key),
        integer(change.stamp.at_ms),
        integer(change.stamp.origin),
        change.image.map_or(Reply::Null, Reply::Bulk),
    ])
}
