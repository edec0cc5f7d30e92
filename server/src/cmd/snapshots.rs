//! `SAVE`, `BGSAVE` and `LASTSAVE`, as Redis has them, over cartd's snapshots.

use std::sync::atomic::Ordering;

use protocol::{Command, CommandError, Reply};

use crate::server::Server;

/// Runs a snapshot command.
pub fn run(command: Command, server: &Server) -> Result<Reply, CommandError> {
    let durability = server.durable();
    match command {
        Command::Save => durability
            .save(server)
            .map(|_| Reply::ok())
            .map_err(CommandError::err),
        Command::BgSave => durability
            .bgsave()
            .map(|()| Reply::Simple("Background saving started".into()))
            .map_err(CommandError::err),
        Command::LastSave => Ok(Reply::Integer(
            durability.last_save_s.load(Ordering::Relaxed) as i64,
        )),
        _ => unreachable!("only snapshot commands are routed here"),
    }
}
