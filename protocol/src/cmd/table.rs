//! The command table: one row per command, behind dispatch, arity checks, `COMMAND INFO`,
//! `COMMAND DOCS` and (later) cluster slot checks. Rows are in [`CommandId`] order.

/// Every command cartd knows, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the table row documents each one
pub enum CommandId {
    CartAdd,
    CartSet,
    CartRemove,
    CartGet,
    CartClear,
    CartMerge,
    CartSave,
    CartRestore,
    CartPromo,
    CartGiftCard,
    CartCheckout,
    CartComplete,
    CartRelease,
    CatalogSet,
    CatalogGet,
    CatalogDel,
    StockSet,
    PromoSet,
    PromoGet,
    PromoDel,
    GiftCardSet,
    GiftCardGet,
    GiftCardDel,
    Ping,
    Echo,
    Hello,
    Auth,
    Select,
    Quit,
    Reset,
    Client,
    Command,
    Info,
    Config,
    DbSize,
    Exists,
    Del,
    Type,
    Ttl,
    Pttl,
    Scan,
    Time,
    Shutdown,
    Save,
    BgSave,
    LastSave,
}

impl CommandId {
    /// The table row of this command.
    pub fn spec(self) -> &'static CommandSpec {
        &COMMANDS[self as usize]
    }
}

/// One row of the command table.
#[derive(Debug)]
pub struct CommandSpec {
    /// The command.
    pub id: CommandId,
    /// Lower-case name, as `COMMAND` and error messages show it.
    pub name: &'static str,
    /// Redis arity: N means exactly N words with the name, -N at least N.
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key, 0 for none.
    pub first_key: i32,
    /// Position of the last key (-1: the last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// Redis command group for `COMMAND DOCS` (`cart` for cartd's own).
    pub group: &'static str,
    /// One line on what the command does.
    pub summary: &'static str,
    /// Arguments after the name, in Redis's documentation syntax.
    pub syntax: &'static str,
}

impl CommandSpec {
    /// Finds a command by name, case-insensitively.
    pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
        COMMANDS
            .iter()
            .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
    }

    /// Whether `words` (with the name) fits the arity.
    pub fn arity_allows(&self, words: usize) -> bool {
        let arity = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            words == arity
        } else {
            words >= arity
        }
    }

    /// Whether the command changes carts or the catalog.
    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }
}

macro_rules! row {
    ($id:ident, $name:literal, $arity:literal, [$($flag:literal),*], $first:literal, $last:literal, $step:literal, $group:literal, $summary:literal, $syntax:expr) => {
        CommandSpec {
            id: CommandId::$id,
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            step: $step,
            group: $group,
            summary: $summary,
            syntax: $syntax,
        }
    };
}

/// The command table, in [`CommandId`] order.
pub static COMMANDS: &[CommandSpec] = &[
    row!(
        CartAdd,
        "cart.add",
        -5,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        "cart",
        "Adds a quantity of a product variant to a cart, creating cart and line as needed.",
        const_format_mutation::ADD
    ),
    row!(
        CartSet,
        "cart.set",
        -5,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        "cart",
        "Sets a line's quantity; 0 removes the line.",
        const_format_mutation::SET
    ),
    row!(
        CartRemove,
        "cart.remove",
        -4,
        ["write", "fast"],
        1,
        1,
        1,
        "cart",
        "Removes a line from the cart, the saved list or the unavailable list.",
        const_format_mutation::REMOVE
    ),
    row!(
        CartGet,
        "cart.get",
        -2,
        ["readonly", "fast"],
        1,
        1,
        1,
        "cart",
        "Returns the validated cart view, or null for a missing cart.",
        "key [NOVALIDATE] [FORMAT RESP|JSON]"
    ),
    row!(
        CartClear,
        "cart.clear",
        -2,
        ["write", "fast"],
        1,
        1,
        1,
        "cart",
        "Removes every active line; saved lines stay.",
        const_format_mutation::CLEAR
    ),
    row!(
        CartMerge,
        "cart.merge",
        -3,
        ["write", "denyoom"],
        1,
        2,
        1,
        "cart",
        "Merges a guest cart into a user cart atomically and deletes the guest cart.",
        const_format_mutation::MERGE
    ),
    row!(
        CartSave,
        "cart.save",
        -4,
        ["write", "fast"],
        1,
        1,
        1,
        "cart",
        "Moves a line from the cart to saved-for-later.",
        const_format_mutation::LINE
    ),
    row!(
        CartRestore,
        "cart.restore",
        -4,
        ["write", "fast"],
        1,
        1,
        1,
        "cart",
        "Moves a line back into the cart from saved-for-later or unavailable.",
        const_format_mutation::LINE
    ),
    row!(
        CartPromo,
        "cart.promo",
        -4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        "cart",
        "Applies a promotion code to a cart, or drops it.",
        const_format_mutation::CODE
    ),
    row!(
        CartGiftCard,
        "cart.giftcard",
        -4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        "cart",
        "Applies a gift card to a cart, or drops it; the amount applied is min(balance, remaining total).",
        const_format_mutation::CODE
    ),
    row!(
        CartCheckout,
        "cart.checkout",
        -2,
        ["write", "denyoom"],
        1,
        1,
        1,
        "cart",
        "Validates the cart, then freezes it for checkout and returns the view with its checkout token.",
        const_format_mutation::CHECKOUT
    ),
    row!(
        CartComplete,
        "cart.complete",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        "cart",
        "Completes a checkout: deletes the frozen cart and records a checkout event.",
        const_format_mutation::COMPLETE
    ),
    row!(
        CartRelease,
        "cart.release",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        "cart",
        "Abandons a checkout: unfreezes the cart.",
        const_format_mutation::RELEASE
    ),
    row!(
        CatalogSet,
        "catalog.set",
        -5,
        ["write", "denyoom", "fast"],
        0,
        0,
        0,
        "catalog",
        "Upserts a product variant's price, and optionally its stock and per-cart limit.",
        "product variant price_minor currency [STOCK n] [MAXQTY n]"
    ),
    row!(
        CatalogGet,
        "catalog.get",
        3,
        ["readonly", "fast"],
        0,
        0,
        0,
        "catalog",
        "Returns a product variant's catalog entry, or null.",
        "product variant"
    ),
    row!(
        CatalogDel,
        "catalog.del",
        3,
        ["write", "fast"],
        0,
        0,
        0,
        "catalog",
        "Forgets a product variant.",
        "product variant"
    ),
    row!(
        StockSet,
        "stock.set",
        4,
        ["write", "fast"],
        0,
        0,
        0,
        "catalog",
        "Sets a product variant's stock level (0: out of stock).",
        "product variant n"
    ),
    row!(
        PromoSet,
        "promo.set",
        3,
        ["write", "denyoom", "fast"],
        0,
        0,
        0,
        "pricing",
        "Defines or replaces a promotion from its JSON document.",
        "code json"
    ),
    row!(
        PromoGet,
        "promo.get",
        2,
        ["readonly", "fast"],
        0,
        0,
        0,
        "pricing",
        "Returns a promotion's JSON document, or null.",
        "code"
    ),
    row!(
        PromoDel,
        "promo.del",
        2,
        ["write", "fast"],
        0,
        0,
        0,
        "pricing",
        "Forgets a promotion.",
        "code"
    ),
    row!(
        GiftCardSet,
        "giftcard.set",
        4,
        ["write", "denyoom", "fast"],
        0,
        0,
        0,
        "pricing",
        "Creates a gift card or replaces its balance.",
        "code balance_minor currency"
    ),
    row!(
        GiftCardGet,
        "giftcard.get",
        2,
        ["readonly", "fast"],
        0,
        0,
        0,
        "pricing",
        "Returns a gift card's balance and currency, or null.",
        "code"
    ),
    row!(
        GiftCardDel,
        "giftcard.del",
        2,
        ["write", "fast"],
        0,
        0,
        0,
        "pricing",
        "Forgets a gift card.",
        "code"
    ),
    row!(
        Ping,
        "ping",
        -1,
        ["fast", "stale"],
        0,
        0,
        0,
        "connection",
        "Returns PONG, or the message given.",
        "[message]"
    ),
    row!(
        Echo,
        "echo",
        2,
        ["fast", "stale"],
        0,
        0,
        0,
        "connection",
        "Returns the message given.",
        "message"
    ),
    row!(
        Hello,
        "hello",
        -1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        "connection",
        "Handshakes: protocol version, authentication, connection name.",
        "[protover [AUTH username password] [SETNAME clientname]]"
    ),
    row!(
        Auth,
        "auth",
        -2,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        "connection",
        "Authenticates the connection.",
        "[username] password"
    ),
    row!(
        Select,
        "select",
        2,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        "connection",
        "Selects database 0, the only one.",
        "index"
    ),
    row!(
        Quit,
        "quit",
        -1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        "connection",
        "Closes the connection after replying OK.",
        ""
    ),
    row!(
        Reset,
        "reset",
        1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        "connection",
        "Resets the connection: RESP2, unnamed, unauthenticated when a password is set.",
        ""
    ),
    row!(
        Client,
        "client",
        -2,
        ["loading", "stale"],
        0,
        0,
        0,
        "connection",
        "Connection commands: ID, GETNAME, SETNAME, SETINFO, LIST, INFO, KILL.",
        "ID|GETNAME|SETNAME|SETINFO|LIST|INFO|KILL [argument ...]"
    ),
    row!(
        Command,
        "command",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        "server",
        "Describes commands: COUNT, INFO, DOCS, LIST.",
        "[COUNT|INFO|DOCS|LIST [argument ...]]"
    ),
    row!(
        Info,
        "info",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        "server",
        "Server information and statistics, in Redis's format.",
        "[section ...]"
    ),
    row!(
        Config,
        "config",
        -2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        "server",
        "Reads configuration parameters (CONFIG GET) and resets statistics (CONFIG RESETSTAT).",
        "GET|RESETSTAT [parameter ...]"
    ),
    row!(
        DbSize,
        "dbsize",
        1,
        ["readonly", "fast"],
        0,
        0,
        0,
        "server",
        "Returns the number of carts.",
        ""
    ),
    row!(
        Exists,
        "exists",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        "generic",
        "Counts how many of the keys are carts.",
        "key [key ...]"
    ),
    row!(
        Del,
        "del",
        -2,
        ["write"],
        1,
        -1,
        1,
        "generic",
        "Deletes carts; returns how many existed.",
        "key [key ...]"
    ),
    row!(
        Type,
        "type",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        "generic",
        "Returns 'cart' for a cart, 'none' otherwise.",
        "key"
    ),
    row!(
        Ttl,
        "ttl",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        "generic",
        "Seconds until the cart expires (-2: no such cart).",
        "key"
    ),
    row!(
        Pttl,
        "pttl",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        "generic",
        "Milliseconds until the cart expires (-2: no such cart).",
        "key"
    ),
    row!(
        Scan,
        "scan",
        -2,
        ["readonly"],
        0,
        0,
        0,
        "generic",
        "Iterates over cart keys.",
        "cursor [MATCH pattern] [COUNT count] [TYPE type]"
    ),
    row!(
        Time,
        "time",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        "server",
        "Returns the server time: seconds and microseconds.",
        ""
    ),
    row!(
        Shutdown,
        "shutdown",
        -1,
        ["admin", "noscript", "loading", "stale", "no_auth"],
        0,
        0,
        0,
        "server",
        "Stops the server gracefully.",
        "[NOSAVE|SAVE] [NOW] [FORCE]"
    ),
    row!(
        Save,
        "save",
        1,
        ["admin", "noscript", "no_async_loading"],
        0,
        0,
        0,
        "server",
        "Writes a snapshot of every cart and waits for it.",
        ""
    ),
    row!(
        BgSave,
        "bgsave",
        -1,
        ["admin", "noscript", "no_async_loading"],
        0,
        0,
        0,
        "server",
        "Starts a snapshot in the background.",
        "[SCHEDULE]"
    ),
    row!(
        LastSave,
        "lastsave",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        "server",
        "Returns the Unix time of the last successful snapshot.",
        ""
    ),
];

/// Syntax strings of the mutations: their own arguments, then the options every mutation takes.
mod const_format_mutation {
    macro_rules! with_mutation {
        ($own:literal) => {
            concat!($own, " [IFVERSION version] [IDEMPOTENCY token] [REPLY CART|VERSION|NONE] [FORMAT RESP|JSON]")
        };
    }
    pub const ADD: &str =
        with_mutation!("key product variant qty [PRICE price_minor CURRENCY currency]");
    pub const SET: &str = with_mutation!("key product variant qty");
    pub const REMOVE: &str = with_mutation!("key product variant [FROM CART|SAVED|UNAVAILABLE]");
    pub const CLEAR: &str = with_mutation!("key");
    pub const MERGE: &str = with_mutation!("guest_key user_key [QTY MAX|SUM]");
    pub const LINE: &str = with_mutation!("key product variant");
    pub const CODE: &str = with_mutation!("key ADD|REMOVE code");
    pub const CHECKOUT: &str = with_mutation!("key [HOLD seconds]");
    pub const COMPLETE: &str = with_mutation!("key token [ORDER order_id]");
    pub const RELEASE: &str = with_mutation!("key token");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_id_order() {
        for (index, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(spec.id as usize, index, "{} is out of order", spec.name);
            assert!(spec.syntax.is_empty() || !spec.syntax.starts_with(' '));
        }
    }

    #[test]
    fn every_row_is_found_by_its_name() {
        for spec in COMMANDS {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert_eq!(
                CommandSpec::lookup(spec.name.as_bytes()).map(|found| found.id),
                Some(spec.id)
            );
        }
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(
            CommandSpec::lookup(b"CaRt.AdD").map(|spec| spec.id),
            Some(CommandId::CartAdd)
        );
        assert!(CommandSpec::lookup(b"cart.nope").is_none());
    }
}
