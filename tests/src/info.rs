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
