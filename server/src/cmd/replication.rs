//! ROLE, WAIT, READONLY, READWRITE, and the replica's side of the handshake (REPLCONF,
//! PSYNC; the link itself is `crate::replication`).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use protocol::{CommandError, Reply};

use crate::dispatch::Session;
use crate::server::Server;

/// `ROLE`: `master offset [[ip port offset] ...]`, or `slave host port state offset`.
pub fn role(server: &Server) -> Reply {
    let offset = server
        .durability
        .get()
        .map_or(0, |durability| durability.wal.last_lsn());
    let integer = |value: u64| Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX));
    if let Some(primary) = server.primary() {
        let link = &server.replication.link;
        let state = if link.up.load(Ordering::Acquire) {
            "connected"
        } else if link.syncing.load(Ordering::Acquire) {
            "sync"
        } else {
            "connect"
        };
        let offset = if link.up.load(Ordering::Acquire) {
            integer(offset)
        } else {
            Reply::Integer(-1)
        };
        return Reply::Array(vec![
            Reply::from_static("slave"),
            Reply::text(primary.host.clone()),
            Reply::Integer(i64::from(primary.port)),
            Reply::from_static(state),
            offset,
        ]);
    }
    let replicas = server
        .replication
        .followers()
        .into_iter()
        .filter(|follower| follower.state == "online")
        .map(|follower| {
            Reply::Array(vec![
                Reply::text(follower.ip),
                Reply::text(follower.port.to_string()),
                Reply::text(follower.acked_lsn.to_string()),
            ])
        })
        .collect();
    Reply::Array(vec![
        Reply::from_static("master"),
        integer(offset),
        Reply::Array(replicas),
    ])
}

/// `WAIT`: how many replicas have logged this client's last change (the connection waited
/// for enough of them, or the timeout, before).
pub fn wait(session: &Session, server: &Server) -> Result<Reply, CommandError> {
    if server.primary().is_some() {
        return Err(CommandError::err(
            "WAIT cannot be used with replica instances.",
        ));
    }
    let count = server.replication.acked_at_least(session.last_write_lsn);
    Ok(Reply::Integer(count as i64))
}

/// `READONLY` (`true`) and `READWRITE`: Redis's error outside cluster mode.
pub fn read_only(on: bool, session: &mut Session, server: &Server) -> Result<Reply, CommandError> {
    if server.cluster.is_none() {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    }
    session.read_only = on;
    Ok(Reply::ok())
}

/// `REPLCONF listening-port port`, `capa ...`, `ip-address ...`; an `ACK` outside a link
/// is ignored (no reply, as Redis).
pub fn replconf(args: &[Bytes], session: &mut Session) -> Result<Reply, CommandError> {
    if !args.len().is_multiple_of(2) || args.is_empty() {
        return Err(CommandError::err("syntax error"));
    }
    for pair in args.chunks(2) {
        let option = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        match option.as_str() {
            "listening-port" => {
                let port = protocol::parse_i64(&pair[1])
                    .ok()
                    .and_then(|port| u16::try_from(port).ok())
                    .ok_or_else(|| CommandError::err("value is not an integer or out of range"))?;
                session.replica_port = Some(port);
            }
            "cartd-node" => {
                let node = String::from_utf8_lossy(&pair[1]).into_owned();
                if node.is_empty() || node.len() > 40 {
                    return Err(CommandError::err("a cartd-node id is 1 to 40 characters"));
                }
                session.replica_node = Some(node);
            }
            "ack" | "getack" => return Ok(Reply::Sequence(Vec::new())),
            "capa" | "ip-address" => {}
            _ => {
                return Err(CommandError::err(format!(
                    "Unrecognized REPLCONF option: {option}"
                )))
            }
        }
    }
    Ok(Reply::ok())
}

/// `PSYNC id lsn`: the connection becomes a replication link once this reply-less command
/// returns (the link answers `+CONTINUE` or `+FULLRESYNC` itself).
pub fn psync(
    replication_id: Bytes,
    lsn: u64,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    if server.primary().is_some() {
        return Err(CommandError::err(
            "this node is a replica: replicate from its primary (chained replication is not supported)",
        ));
    }
    if session.transaction.is_some() {
        return Err(CommandError::err("PSYNC inside MULTI is not allowed"));
    }
    session.replica_handover = Some((replication_id, lsn));
    Ok(Reply::Sequence(Vec::new()))
}
