//! Error replies: an upper-case code, as Redis sends them, and a sentence a person can act on.

use std::fmt;

/// The code that starts an error reply. Redis's own codes keep their Redis meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Generic error (`ERR`).
    Err,
    /// Wrong kind of key (`WRONGTYPE`).
    WrongType,
    /// Authentication required (`NOAUTH`).
    NoAuth,
    /// Wrong password (`WRONGPASS`).
    WrongPass,
    /// The user may not run the command or touch the key (`NOPERM`).
    NoPerm,
    /// Unsupported protocol version in HELLO (`NOPROTO`).
    NoProto,
    /// Out of room: a configured capacity is reached (`OOM`).
    Oom,
    /// The cart does not exist (`NOCART`).
    NoCart,
    /// The line does not exist (`NOITEM`).
    NoItem,
    /// No price could be found for a new line (`NOPRICE`).
    NoPrice,
    /// A limit would be exceeded (`LIMIT`).
    Limit,
    /// `IFVERSION` did not match (`VERSION`).
    Version,
    /// An idempotency token was reused with other arguments (`IDEMPOTENCY`).
    Idempotency,
    /// The cart is frozen for checkout (`FROZEN`).
    Frozen,
    /// The data is still being loaded (`LOADING`).
    Loading,
    /// A dependency is briefly unavailable; retry (`TRYAGAIN`).
    TryAgain,
    /// A checkout token that does not match (`TOKEN`).
    Token,
    /// A promotion that is unknown, invalid or does not apply (`PROMO`).
    Promo,
    /// A gift card that is unknown or cannot be used (`GIFTCARD`).
    GiftCard,
    /// Writes are refused because the log cannot be written (`MISCONF`, as Redis when its AOF
    /// or snapshot cannot be written).
    Misconf,
    /// EXEC of a transaction a queued command was refused in (`EXECABORT`).
    ExecAbort,
    /// The key's slot is served by another node (`MOVED slot host:port`).
    Moved,
    /// The keys of one request (or transaction) are in different slots (`CROSSSLOT`).
    CrossSlot,
    /// No node serves the key's slot (`CLUSTERDOWN`).
    ClusterDown,
    /// A write sent to a replica (`READONLY You can't write against a read only replica.`).
    ReadOnly,
    /// The key's slot is being moved and the key is on the target already (`ASK slot
    /// host:port`: send `ASKING` there, then the command).
    Ask,
    /// The target of a MIGRATE has the key already (`BUSYKEY`).
    BusyKey,
}

impl ErrorCode {
    /// Every code, in declaration order (`code as usize` indexes it).
    pub const ALL: [ErrorCode; 27] = [
        ErrorCode::Err,
        ErrorCode::WrongType,
        ErrorCode::NoAuth,
        ErrorCode::WrongPass,
        ErrorCode::NoPerm,
        ErrorCode::NoProto,
        ErrorCode::Oom,
        ErrorCode::NoCart,
        ErrorCode::NoItem,
        ErrorCode::NoPrice,
        ErrorCode::Limit,
        ErrorCode::Version,
        ErrorCode::Idempotency,
        ErrorCode::Frozen,
        ErrorCode::Loading,
        ErrorCode::TryAgain,
        ErrorCode::Token,
        ErrorCode::Promo,
        ErrorCode::GiftCard,
        ErrorCode::Misconf,
        ErrorCode::ExecAbort,
        ErrorCode::Moved,
        ErrorCode::CrossSlot,
        ErrorCode::ClusterDown,
        ErrorCode::ReadOnly,
        ErrorCode::Ask,
        ErrorCode::BusyKey,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Err => "ERR",
            ErrorCode::WrongType => "WRONGTYPE",
            ErrorCode::NoAuth => "NOAUTH",
            ErrorCode::WrongPass => "WRONGPASS",
            ErrorCode::NoPerm => "NOPERM",
            ErrorCode::NoProto => "NOPROTO",
            ErrorCode::Oom => "OOM",
            ErrorCode::NoCart => "NOCART",
            ErrorCode::NoItem => "NOITEM",
            ErrorCode::NoPrice => "NOPRICE",
            ErrorCode::Limit => "LIMIT",
            ErrorCode::Version => "VERSION",
            ErrorCode::Idempotency => "IDEMPOTENCY",
            ErrorCode::Frozen => "FROZEN",
            ErrorCode::Loading => "LOADING",
            ErrorCode::TryAgain => "TRYAGAIN",
            ErrorCode::Token => "TOKEN",
            ErrorCode::Promo => "PROMO",
            ErrorCode::GiftCard => "GIFTCARD",
            ErrorCode::Misconf => "MISCONF",
            ErrorCode::ExecAbort => "EXECABORT",
            ErrorCode::Moved => "MOVED",
            ErrorCode::CrossSlot => "CROSSSLOT",
            ErrorCode::ClusterDown => "CLUSTERDOWN",
            ErrorCode::ReadOnly => "READONLY",
            ErrorCode::Ask => "ASK",
            ErrorCode::BusyKey => "BUSYKEY",
        }
    }
}

/// A well-framed request that cannot be carried out. It becomes one error reply; the
/// connection carries on and nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The reply's leading code.
    pub code: ErrorCode,
    /// The sentence after the code.
    pub message: String,
}

impl CommandError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CommandError {
        CommandError {
            code,
            message: message.into(),
        }
    }

    /// A plain `ERR` error.
    pub fn err(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorCode::Err, message)
    }

    /// `ERR syntax error`, Redis's reply to an unknown or misplaced option.
    pub fn syntax() -> CommandError {
        CommandError::err("syntax error")
    }

    /// `ERR value is not an integer or out of range`, Redis's reply to a bad integer.
    pub fn not_an_integer() -> CommandError {
        CommandError::err("value is not an integer or out of range")
    }

    /// `ERR wrong number of arguments for 'name' command`.
    pub fn arity(name: &str) -> CommandError {
        CommandError::err(format!("wrong number of arguments for '{name}' command"))
    }

    /// A `LIMIT` error.
    pub fn limit(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorCode::Limit, message)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_at_its_index() {
        for (index, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, index, "{}", code.as_str());
        }
    }
}
