//! Reading `INFO` replies: fetching sections as text and picking `name:value` fields out of it.
//! Sending the command is left to `client`.

use redis::aio::MultiplexedConnection;

use crate::{ok, text};

/// `INFO sections...` as text.
pub async fn info(conn: &mut MultiplexedConnection, sections: &[&str]) -> String {
    let mut args = vec!["INFO"];
    args.extend_from_slice(sections);
    text(&ok(conn, &args).await)
}

/// The value of `name:value` in an INFO text.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.split("\r\n")
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::to_string)
}

/// A numeric INFO field; panics if it is missing or not a number.
pub fn info_number(info: &str, name: &str) -> u64 {
    info_field(info, name)
        .unwrap_or_else(|| panic!("INFO has no {name}:\n{info}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Waits (up to 30 s) until PostgreSQL holds every record cartd has logged (its sink's
/// checkpoint reaches the last LSN); returns that LSN. Panics with the INFO text if not.
pub async fn wait_for_sink(conn: &mut MultiplexedConnection) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = info(conn, &["persistence"]).await;
        let last = info_number(&text, "wal_last_lsn");
        if info_number(&text, "postgres_checkpoint_lsn") == last {
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sink did not catch up:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
