//! `SAVE`, `BGSAVE` and `LASTSAVE`, as Redis has them, over cartd's snapshots.

use std::sync::atomic::Ordering;

use protocol::{Command, CommandError, Reply};

use crate::server::{now_ms, Server};

/// Runs a snapshot command. Only LASTSAVE may run while loading: until recovery ends it
/// answers the time the server started, as Redis does before its first save.
pub fn run(command: Command, server: &Server) -> Result<Reply, CommandError> {
    let Some(durability) = server.durability.get() else {
        assert!(
            matches!(command, Command::LastSave),
            "the command table lets only LASTSAVE run while loading"
        );
        let started_s = now_ms() / 1000 - server.started.elapsed().as_secs();
        return Ok(Reply::Integer(started_s as i64));
    };
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
