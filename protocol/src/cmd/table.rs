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
    Acl,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Role,
    Slowlog,
    Latency,
    Debug,
    Memory,
    Object,
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
    Publish,
    PubSub,
    Monitor,
    Cluster,
    Wait,
    ReadOnly,
    ReadWrite,
    ReplConf,
    Psync,
    RefSync,
    CartHandoff,
    CartHandoffDone,
    GiftSync,
    Asking,
    Migrate,
    CartImport,
}

impl CommandId {
    /// The table row of this command.
    pub fn spec(self) -> &'static CommandSpec {
        &COMMANDS[self as usize]
    }
}

/// Where a command's keys are, as Redis's `COMMAND` reports them: positions counted with the
/// name at 0. Every key is a cart key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// Position of the first key, 0 for none.
    pub first: i32,
    /// Position of the last key (-1: the last argument).
    pub last: i32,
    /// Step between keys.
    pub step: i32,
}

impl Keys {
    /// A keyless command.
    pub const NONE: Keys = Keys {
        first: 0,
        last: 0,
        step: 0,
    };

    /// The positions of the keys in a request of `words` words (name included).
    pub fn positions(&self, words: usize) -> impl Iterator<Item = usize> {
        let first = usize::try_from(self.first).unwrap_or(0);
        let last = match self.last {
            last if last < 0 => words.saturating_sub(last.unsigned_abs() as usize),
            last => (last as usize).min(words.saturating_sub(1)),
        };
        let step = usize::try_from(self.step).unwrap_or(1).max(1);
        let range = if first == 0 || first >= words {
            0..0
        } else {
            first..last + 1
        };
        range.step_by(step)
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
    /// ACL categories beyond those its flags imply (see [`CommandSpec::categories`]),
    /// without the `@`.
    pub categories: &'static [&'static str],
    /// Where its keys (carts) are among its arguments: what COMMAND INFO and GETKEYS report,
    /// and what a cluster routes it by.
    pub keys: Keys,
    /// Carts it also touches, not reported and not routed by: the ACL checks them and
    /// restore-on-miss loads them all the same (CART.MERGE's guest cart: clients route a merge
    /// by the user cart, whose node takes the guest cart from wherever it is).
    pub also_keys: Keys,
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

    /// The positions of every cart a request of `words` words touches: its declared keys,
    /// then the others ([`CommandSpec::also_keys`]).
    pub fn all_key_positions(&self, words: usize) -> impl Iterator<Item = usize> {
        self.keys
            .positions(words)
            .chain(self.also_keys.positions(words))
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

    /// Whether it carries `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// Its ACL categories, without the `@`: those its flags imply, as Redis derives them
    /// (`write`, `read`, `admin` and `dangerous`, `fast` or else `slow`), then its own.
    pub fn categories(&self) -> Vec<&'static str> {
        let mut categories = Vec::new();
        if self.has_flag("write") {
            categories.push("write");
        }
        if self.has_flag("readonly") {
            categories.push("read");
        }
        if self.has_flag("admin") {
            categories.extend(["admin", "dangerous"]);
        }
        categories.push(if self.has_flag("fast") {
            "fast"
        } else {
            "slow"
        });
        for category in self.categories {
            if !categories.contains(category) {
                categories.push(category);
            }
        }
        categories
    }
}

/// The command table, in [`CommandId`] order.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        id: CommandId::CartAdd,
        name: "cart.add",
        arity: -5,
        flags: &["write", "denyoom", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Adds a quantity of a product variant to a cart, creating cart and line as needed.",
        syntax: const_format_mutation::ADD,
    },
    CommandSpec {
        id: CommandId::CartSet,
        name: "cart.set",
        arity: -5,
        flags: &["write", "denyoom", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Sets a line's quantity; 0 removes the line.",
        syntax: const_format_mutation::SET,
    },
    CommandSpec {
        id: CommandId::CartRemove,
        name: "cart.remove",
        arity: -4,
        flags: &["write", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Removes a line from the cart, the saved list or the unavailable list.",
        syntax: const_format_mutation::REMOVE,
    },
    CommandSpec {
        id: CommandId::CartGet,
        name: "cart.get",
        arity: -2,
        flags: &["write", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Returns the validated cart view, or null for a missing cart.",
        syntax: "key [NOVALIDATE] [FORMAT RESP|JSON] [IFCHANGED version]",
    },
    CommandSpec {
        id: CommandId::CartClear,
        name: "cart.clear",
        arity: -2,
        flags: &["write", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Removes every active line; saved lines stay.",
        syntax: const_format_mutation::CLEAR,
    },
    CommandSpec {
        id: CommandId::CartMerge,
        name: "cart.merge",
        arity: -3,
        flags: &["write", "denyoom"],
        categories: &["cart"],
        keys: Keys { first: 2, last: 2, step: 1 },
        also_keys: Keys { first: 1, last: 1, step: 1 },
        group: "cart",
        summary: "Merges a guest cart into a user cart atomically and deletes the guest cart.",
        syntax: const_format_mutation::MERGE,
    },
    CommandSpec {
        id: CommandId::CartSave,
        name: "cart.save",
        arity: -4,
        flags: &["write", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Moves a line from the cart to saved-for-later.",
        syntax: const_format_mutation::LINE,
    },
    CommandSpec {
        id: CommandId::CartRestore,
        name: "cart.restore",
        arity: -4,
        flags: &["write", "fast"],
        categories: &["cart"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Moves a line back into the cart from saved-for-later or unavailable.",
        syntax: const_format_mutation::LINE,
    },
    CommandSpec {
        id: CommandId::CartPromo,
        name: "cart.promo",
        arity: -4,
        flags: &["write", "denyoom", "fast"],
        categories: &["cart", "promo"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Applies a promotion code to a cart, or drops it.",
        syntax: const_format_mutation::CODE,
    },
    CommandSpec {
        id: CommandId::CartGiftCard,
        name: "cart.giftcard",
        arity: -4,
        flags: &["write", "denyoom", "fast"],
        categories: &["cart", "giftcard"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Applies a gift card to a cart, or drops it; the amount applied is min(balance, remaining total).",
        syntax: const_format_mutation::CODE,
    },
    CommandSpec {
        id: CommandId::CartCheckout,
        name: "cart.checkout",
        arity: -2,
        flags: &["write", "denyoom"],
        categories: &["cart", "checkout"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Validates the cart, then freezes it for checkout and returns the view with its checkout token.",
        syntax: const_format_mutation::CHECKOUT,
    },
    CommandSpec {
        id: CommandId::CartComplete,
        name: "cart.complete",
        arity: -3,
        flags: &["write", "fast"],
        categories: &["cart", "checkout"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Completes a checkout: deletes the frozen cart and records a checkout event.",
        syntax: const_format_mutation::COMPLETE,
    },
    CommandSpec {
        id: CommandId::CartRelease,
        name: "cart.release",
        arity: -3,
        flags: &["write", "fast"],
        categories: &["cart", "checkout"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Abandons a checkout: unfreezes the cart.",
        syntax: const_format_mutation::RELEASE,
    },
    CommandSpec {
        id: CommandId::CatalogSet,
        name: "catalog.set",
        arity: -5,
        flags: &["write", "denyoom", "fast"],
        categories: &["catalog"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "catalog",
        summary: "Upserts a product variant's price, and optionally its stock and per-cart limit.",
        syntax: "product variant price_minor currency [STOCK n] [MAXQTY n]",
    },
    CommandSpec {
        id: CommandId::CatalogGet,
        name: "catalog.get",
        arity: 3,
        flags: &["readonly", "fast"],
        categories: &["catalog"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "catalog",
        summary: "Returns a product variant's catalog entry, or null.",
        syntax: "product variant",
    },
    CommandSpec {
        id: CommandId::CatalogDel,
        name: "catalog.del",
        arity: 3,
        flags: &["write", "fast"],
        categories: &["catalog"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "catalog",
        summary: "Forgets a product variant.",
        syntax: "product variant",
    },
    CommandSpec {
        id: CommandId::StockSet,
        name: "stock.set",
        arity: 4,
        flags: &["write", "fast"],
        categories: &["catalog"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "catalog",
        summary: "Sets a product variant's stock level (0: out of stock).",
        syntax: "product variant n",
    },
    CommandSpec {
        id: CommandId::PromoSet,
        name: "promo.set",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        categories: &["promo"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pricing",
        summary: "Defines or replaces a promotion from its JSON document.",
        syntax: "code json",
    },
    CommandSpec {
        id: CommandId::PromoGet,
        name: "promo.get",
        arity: 2,
        flags: &["readonly", "fast"],
        categories: &["promo"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pricing",
        summary: "Returns a promotion's JSON document, or null.",
        syntax: "code",
    },
    CommandSpec {
        id: CommandId::PromoDel,
        name: "promo.del",
        arity: 2,
        flags: &["write", "fast"],
        categories: &["promo"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pricing",
        summary: "Forgets a promotion.",
        syntax: "code",
    },
    CommandSpec {
        id: CommandId::GiftCardSet,
        name: "giftcard.set",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        categories: &["giftcard"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pricing",
        summary: "Creates a gift card or replaces its balance.",
        syntax: "code balance_minor currency",
    },
    CommandSpec {
        id: CommandId::GiftCardGet,
        name: "giftcard.get",
        arity: 2,
        flags: &["readonly", "fast"],
        categories: &["giftcard"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pricing",
        summary: "Returns a gift card's balance and currency, or null.",
        syntax: "code",
    },
    CommandSpec {
        id: CommandId::GiftCardDel,
        name: "giftcard.del",
        arity: 2,
        flags: &["write", "fast"],
        categories: &["giftcard"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pricing",
        summary: "Forgets a gift card.",
        syntax: "code",
    },
    CommandSpec {
        id: CommandId::Ping,
        name: "ping",
        arity: -1,
        flags: &["fast", "stale"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Returns PONG, or the message given.",
        syntax: "[message]",
    },
    CommandSpec {
        id: CommandId::Echo,
        name: "echo",
        arity: 2,
        flags: &["fast", "stale"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Returns the message given.",
        syntax: "message",
    },
    CommandSpec {
        id: CommandId::Hello,
        name: "hello",
        arity: -1,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Handshakes: protocol version, authentication, connection name.",
        syntax: "[protover [AUTH username password] [SETNAME clientname]]",
    },
    CommandSpec {
        id: CommandId::Auth,
        name: "auth",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Authenticates the connection.",
        syntax: "[username] password",
    },
    CommandSpec {
        id: CommandId::Select,
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Selects database 0, the only one.",
        syntax: "index",
    },
    CommandSpec {
        id: CommandId::Quit,
        name: "quit",
        arity: -1,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Closes the connection after replying OK.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Reset,
        name: "reset",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Resets the connection: RESP2, unnamed, unauthenticated when a password is set.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Client,
        name: "client",
        arity: -2,
        flags: &["loading", "stale"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "connection",
        summary: "Connection commands: ID, GETNAME, SETNAME, SETINFO, LIST, INFO, KILL, REPLY, PAUSE, UNPAUSE, NO-EVICT, NO-TOUCH, TRACKING, CACHING, GETREDIR, TRACKINGINFO, HELP.",
        syntax: "ID|GETNAME|SETNAME|SETINFO|LIST|INFO|KILL|REPLY|PAUSE|UNPAUSE|NO-EVICT|NO-TOUCH|TRACKING|CACHING|GETREDIR|TRACKINGINFO|HELP [argument ...]",
    },
    CommandSpec {
        id: CommandId::Command,
        name: "command",
        arity: -1,
        flags: &["loading", "stale"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Describes commands: COUNT, INFO, DOCS, LIST.",
        syntax: "[COUNT|INFO|DOCS|LIST [argument ...]]",
    },
    CommandSpec {
        id: CommandId::Info,
        name: "info",
        arity: -1,
        flags: &["loading", "stale"],
        categories: &["dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Server information and statistics, in Redis's format.",
        syntax: "[section ...]",
    },
    CommandSpec {
        id: CommandId::Config,
        name: "config",
        arity: -2,
        flags: &["admin", "loading", "stale"],
        categories: &["admin", "dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Configuration: GET, SET (the parameters that change at run time), REWRITE (into the config file), RESETSTAT, HELP.",
        syntax: "GET|SET|REWRITE|RESETSTAT|HELP [argument ...]",
    },
    CommandSpec {
        id: CommandId::DbSize,
        name: "dbsize",
        arity: 1,
        flags: &["readonly", "fast"],
        categories: &["keyspace"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Returns the number of carts.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Exists,
        name: "exists",
        arity: -2,
        flags: &["readonly", "fast"],
        categories: &["keyspace"],
        keys: Keys { first: 1, last: -1, step: 1 },
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Counts how many of the keys are carts.",
        syntax: "key [key ...]",
    },
    CommandSpec {
        id: CommandId::Del,
        name: "del",
        arity: -2,
        flags: &["write"],
        categories: &["keyspace"],
        keys: Keys { first: 1, last: -1, step: 1 },
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Deletes carts; returns how many existed.",
        syntax: "key [key ...]",
    },
    CommandSpec {
        id: CommandId::Type,
        name: "type",
        arity: 2,
        flags: &["readonly", "fast"],
        categories: &["keyspace"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Returns 'cart' for a cart, 'none' otherwise.",
        syntax: "key",
    },
    CommandSpec {
        id: CommandId::Ttl,
        name: "ttl",
        arity: 2,
        flags: &["readonly", "fast"],
        categories: &["keyspace"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Seconds until the cart expires (-2: no such cart).",
        syntax: "key",
    },
    CommandSpec {
        id: CommandId::Pttl,
        name: "pttl",
        arity: 2,
        flags: &["readonly", "fast"],
        categories: &["keyspace"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Milliseconds until the cart expires (-2: no such cart).",
        syntax: "key",
    },
    CommandSpec {
        id: CommandId::Scan,
        name: "scan",
        arity: -2,
        flags: &["readonly"],
        categories: &["keyspace"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Iterates over cart keys.",
        syntax: "cursor [MATCH pattern] [COUNT count] [TYPE type]",
    },
    CommandSpec {
        id: CommandId::Time,
        name: "time",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Returns the server time: seconds and microseconds.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Shutdown,
        name: "shutdown",
        arity: -1,
        flags: &["admin", "noscript", "loading", "stale"],
        categories: &["dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Stops the server gracefully.",
        syntax: "[NOSAVE|SAVE] [NOW] [FORCE]",
    },
    CommandSpec {
        id: CommandId::Save,
        name: "save",
        arity: 1,
        flags: &["admin", "noscript", "no_async_loading"],
        categories: &["dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Writes a snapshot of every cart and waits for it.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::BgSave,
        name: "bgsave",
        arity: -1,
        flags: &["admin", "noscript", "no_async_loading"],
        categories: &["dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Starts a snapshot in the background.",
        syntax: "[SCHEDULE]",
    },
    CommandSpec {
        id: CommandId::LastSave,
        name: "lastsave",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        categories: &["dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Returns the Unix time of the last successful snapshot.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Acl,
        name: "acl",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Users and their permissions: SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, LOG, SAVE, LOAD.",
        syntax: "subcommand [argument ...]",
    },
    CommandSpec {
        id: CommandId::Multi,
        name: "multi",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        categories: &["transaction"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "transactions",
        summary: "Starts a transaction: the commands that follow are queued until EXEC.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Exec,
        name: "exec",
        arity: 1,
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        categories: &["transaction"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "transactions",
        summary: "Runs the queued commands as one atomic, isolated change (null if a WATCHed cart changed).",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Discard,
        name: "discard",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        categories: &["transaction"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "transactions",
        summary: "Drops the queued commands and ends the transaction.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Watch,
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        categories: &["transaction"],
        keys: Keys { first: 1, last: -1, step: 1 },
        also_keys: Keys::NONE,
        group: "transactions",
        summary: "Makes the next EXEC fail (null) if any of these carts changes before it.",
        syntax: "key [key ...]",
    },
    CommandSpec {
        id: CommandId::Unwatch,
        name: "unwatch",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        categories: &["transaction"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "transactions",
        summary: "Forgets every WATCHed cart.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Role,
        name: "role",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast"],
        categories: &["admin", "dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "This node's replication role: master, its log position, no replicas yet.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Slowlog,
        name: "slowlog",
        arity: -2,
        flags: &["admin", "loading", "stale"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "The slow log: commands slower than slowlog-log-slower-than (GET, LEN, RESET, HELP).",
        syntax: "GET|LEN|RESET|HELP [count]",
    },
    CommandSpec {
        id: CommandId::Latency,
        name: "latency",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "The latency monitor: events slower than latency-monitor-threshold (LATEST, HISTORY, RESET, DOCTOR, HISTOGRAM, HELP).",
        syntax: "LATEST|HISTORY|RESET|DOCTOR|HISTOGRAM|HELP [argument ...]",
    },
    CommandSpec {
        id: CommandId::Debug,
        name: "debug",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Debugging aids: DIGEST-VALUE key [key ...] (a digest of each cart, as redis-cli compares two copies of a key while resharding), HELP.",
        syntax: "DIGEST-VALUE|HELP [key ...]",
    },
    CommandSpec {
        id: CommandId::Memory,
        name: "memory",
        arity: -2,
        flags: &["readonly"],
        categories: &[],
        keys: Keys { first: 2, last: 2, step: 1 },
        also_keys: Keys::NONE,
        group: "server",
        summary: "Memory figures: USAGE key (bytes a cart takes), STATS, DOCTOR, MALLOC-STATS, PURGE, HELP.",
        syntax: "USAGE|STATS|DOCTOR|MALLOC-STATS|PURGE|HELP [key [SAMPLES count]]",
    },
    CommandSpec {
        id: CommandId::Object,
        name: "object",
        arity: -2,
        flags: &["readonly"],
        categories: &["keyspace"],
        keys: Keys { first: 2, last: 2, step: 1 },
        also_keys: Keys::NONE,
        group: "generic",
        summary: "A cart's internals: ENCODING, IDLETIME (seconds since last access), FREQ, REFCOUNT, HELP.",
        syntax: "ENCODING|IDLETIME|FREQ|REFCOUNT|HELP [key]",
    },
    CommandSpec {
        id: CommandId::Subscribe,
        name: "subscribe",
        arity: -2,
        flags: &["pubsub", "noscript", "loading", "stale"],
        categories: &["pubsub"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pubsub",
        summary: "Listens for messages published to channels (cart events among them).",
        syntax: "channel [channel ...]",
    },
    CommandSpec {
        id: CommandId::Unsubscribe,
        name: "unsubscribe",
        arity: -1,
        flags: &["pubsub", "noscript", "loading", "stale"],
        categories: &["pubsub"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pubsub",
        summary: "Stops listening to channels (all of them without arguments).",
        syntax: "[channel [channel ...]]",
    },
    CommandSpec {
        id: CommandId::PSubscribe,
        name: "psubscribe",
        arity: -2,
        flags: &["pubsub", "noscript", "loading", "stale"],
        categories: &["pubsub"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pubsub",
        summary: "Listens for messages published to channels matching glob patterns.",
        syntax: "pattern [pattern ...]",
    },
    CommandSpec {
        id: CommandId::PUnsubscribe,
        name: "punsubscribe",
        arity: -1,
        flags: &["pubsub", "noscript", "loading", "stale"],
        categories: &["pubsub"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pubsub",
        summary: "Stops listening to patterns (all of them without arguments).",
        syntax: "[pattern [pattern ...]]",
    },
    CommandSpec {
        id: CommandId::Publish,
        name: "publish",
        arity: 3,
        flags: &["pubsub", "loading", "stale", "fast"],
        categories: &["pubsub"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pubsub",
        summary: "Posts a message to a channel; replies how many subscribers received it.",
        syntax: "channel message",
    },
    CommandSpec {
        id: CommandId::PubSub,
        name: "pubsub",
        arity: -2,
        flags: &["pubsub", "loading", "stale"],
        categories: &["pubsub"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "pubsub",
        summary: "Pub/sub introspection: CHANNELS, NUMSUB, NUMPAT.",
        syntax: "CHANNELS|NUMSUB|NUMPAT|HELP [argument ...]",
    },
    CommandSpec {
        id: CommandId::Monitor,
        name: "monitor",
        arity: 1,
        flags: &["admin", "noscript", "loading", "stale"],
        categories: &["admin", "dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Streams every command the server runs, as it runs them (bounded: a monitor that falls behind is closed).",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Cluster,
        name: "cluster",
        arity: -2,
        flags: &["loading", "stale"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "cluster",
        summary: "Redis Cluster: KEYSLOT, MYID, INFO, SLOTS, SHARDS, NODES, COUNTKEYSINSLOT, GETKEYSINSLOT, HELP.",
        syntax: "KEYSLOT|MYID|INFO|SLOTS|SHARDS|NODES|COUNTKEYSINSLOT|GETKEYSINSLOT|HELP [argument ...]",
    },
    CommandSpec {
        id: CommandId::Wait,
        name: "wait",
        arity: 3,
        flags: &["noscript"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Waits until that many replicas have this client's writes, or the timeout: how many have them.",
        syntax: "numreplicas timeout",
    },
    CommandSpec {
        id: CommandId::ReadOnly,
        name: "readonly",
        arity: 1,
        flags: &["fast", "loading", "stale"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "cluster",
        summary: "Lets this connection read from a replica: CART.GET and the read-only key commands are served there instead of MOVED.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::ReadWrite,
        name: "readwrite",
        arity: 1,
        flags: &["fast", "loading", "stale"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "cluster",
        summary: "Undoes READONLY: a replica redirects this connection's reads to the primary again.",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::ReplConf,
        name: "replconf",
        arity: -1,
        flags: &["admin", "noscript", "loading", "stale"],
        categories: &["admin", "dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "Replication handshake: a replica tells its primary its port (listening-port) and, once streaming, its logged LSN (ACK).",
        syntax: "[option value ...]",
    },
    CommandSpec {
        id: CommandId::Psync,
        name: "psync",
        arity: 3,
        flags: &["admin", "noscript"],
        categories: &["admin", "dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "server",
        summary: "A replica asks for the log after its LSN: +CONTINUE and the records, or +FULLRESYNC, a snapshot and the records after it.",
        syntax: "replicationid lsn",
    },
    CommandSpec {
        id: CommandId::RefSync,
        name: "refsync",
        arity: -2,
        flags: &["write", "admin", "noscript"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "cluster",
        summary: "Internal, between cluster primaries: a peer's write of a catalog entry or promotion, digests of the shared entries, one bucket of them, the links' state.",
        syntax: "SET|DEL|DIGEST|PULL|STATUS [argument ...]",
    },
    CommandSpec {
        id: CommandId::CartHandoff,
        name: "cart.handoff",
        arity: 3,
        flags: &["write", "admin"],
        categories: &["admin", "dangerous"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Between cluster nodes: hands a guest cart off to the node merging it into a user cart (removed here, kept until CART.HANDOFF.DONE).",
        syntax: "guest_key user_key",
    },
    CommandSpec {
        id: CommandId::CartHandoffDone,
        name: "cart.handoff.done",
        arity: 3,
        flags: &["write", "admin"],
        categories: &["admin", "dangerous"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Between cluster nodes: the merge of a handed-off guest cart is durable; the handoff is let go.",
        syntax: "guest_key id",
    },
    CommandSpec {
        id: CommandId::GiftSync,
        name: "giftsync",
        arity: -4,
        flags: &["write", "admin", "noscript"],
        categories: &[],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "cluster",
        summary: "Internal, between cluster primaries: hold, spend or release part of a gift card this node decides, for a checkout on another node; hand a moving slot's cards to the node taking it.",
        syntax: "HOLD|SPEND|RELEASE|HANDOVER code|slot token|node-id [argument ...]",
    },
    CommandSpec {
        id: CommandId::Asking,
        name: "asking",
        arity: 1,
        flags: &["fast"],
        categories: &["connection"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "cluster",
        summary: "The next command may use a key of a slot this node is importing (after an -ASK redirect).",
        syntax: "",
    },
    CommandSpec {
        id: CommandId::Migrate,
        name: "migrate",
        arity: -6,
        flags: &["write"],
        categories: &["keyspace", "dangerous"],
        keys: Keys::NONE,
        also_keys: Keys::NONE,
        group: "generic",
        summary: "Moves carts to another node (in cartd's image format, with CART.IMPORT there), removing them here unless COPY.",
        syntax: "host port key|\"\" destination-db timeout [COPY] [REPLACE] [AUTH password | AUTH2 username password] [KEYS key [key ...]]",
    },
    CommandSpec {
        id: CommandId::CartImport,
        name: "cart.import",
        arity: -3,
        flags: &["write", "admin"],
        categories: &["admin", "dangerous"],
        keys: Keys { first: 1, last: 1, step: 1 },
        also_keys: Keys::NONE,
        group: "cart",
        summary: "Between cluster nodes (a source node's MIGRATE): takes a cart in cartd's image format; BUSYKEY if one is here, unless REPLACE.",
        syntax: "key image [REPLACE]",
    },
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
