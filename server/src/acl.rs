//! Users and what they may run: the subset of Redis's ACL that a cart store needs (see
//! docs/SECURITY.md). A user is on or off, has passwords (kept as SHA-256 digests, compared
//! in constant time) or `nopass`, a set of commands (by name or `@category`) and key
//! patterns (`~pattern`, `allkeys`). Users come from config.toml's `[acl] users`, the
//! `aclfile` and ACL SETUSER; the `default` user is Redis's (no password unless
//! `requirepass`). Denials and failed AUTHs go to the ACL LOG and INFO.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use protocol::glob::Pattern;
use protocol::{CommandId, CommandSpec, COMMANDS};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Entries the ACL LOG keeps (Redis's `acllog-max-len` default).
const LOG_ENTRIES_MAX: usize = 128;

/// Users at most, so that ACL SETUSER cannot fill memory.
pub const USERS_MAX: usize = 10_000;

/// Passwords and key patterns one user may have.
const USER_RULES_MAX: usize = 1_000;

/// cartd's own ACL categories, beside Redis's.
pub const CARTD_CATEGORIES: [&str; 5] = ["cart", "catalog", "promo", "giftcard", "checkout"];

/// Redis's categories that cartd's commands use.
pub const REDIS_CATEGORIES: [&str; 10] = [
    "keyspace",
    "transaction",
    "read",
    "write",
    "admin",
    "dangerous",
    "connection",
    "fast",
    "slow",
    "all",
];

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    /// Its name.
    pub name: String,
    enabled: bool,
    nopass: bool,
    /// SHA-256 digests of its passwords.
    passwords: Vec<[u8; 32]>,
    /// Allowed commands, one bit per [`CommandId`].
    allowed: u128,
    /// The command rules as given, for ACL LIST and GETUSER (`+@all -config`).
    command_rules: Vec<String>,
    allkeys: bool,
    key_patterns: Vec<(String, Pattern)>,
    /// `allchannels` (`&*`): every pub/sub channel and pattern.
    allchannels: bool,
    /// `&pattern` rules: channels it may subscribe and publish to.
    channel_patterns: Vec<(String, Pattern)>,
}

const _: () = assert!(COMMANDS.len() <= 128);

fn bit(id: CommandId) -> u128 {
    1u128 << (id as usize)
}

impl User {
    /// A user as ACL SETUSER creates it: off, no password, no commands, no keys.
    fn new(name: &str) -> User {
        User {
            name: name.to_owned(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            allowed: 0,
            command_rules: Vec::new(),
            allkeys: false,
            key_patterns: Vec::new(),
            // Redis 7's acl-pubsub-default: a new user has no channels until granted.
            allchannels: false,
            channel_patterns: Vec::new(),
        }
    }

    /// Redis's `default` user: on, every command and key, `nopass` unless `requirepass`.
    fn default_user(requirepass: &str) -> User {
        let mut user = User::new("default");
        let mut rules = vec!["on", "~*", "&*", "+@all"];
        let password = format!(">{requirepass}");
        if requirepass.is_empty() {
            rules.push("nopass");
        } else {
            rules.push(&password);
        }
        for rule in rules {
            user.apply(rule)
                .expect("the default user's rules are valid");
        }
        user
    }

    /// Applies one rule; the error names what is wrong with it.
    pub fn apply(&mut self, rule: &str) -> Result<(), String> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" => {
                self.allkeys = true;
                self.key_patterns.clear();
            }
            "resetkeys" => {
                self.allkeys = false;
                self.key_patterns.clear();
            }
            "allcommands" => self.apply("+@all")?,
            "nocommands" => self.apply("-@all")?,
            "allchannels" => {
                self.allchannels = true;
                self.channel_patterns.clear();
            }
            "resetchannels" => {
                self.allchannels = false;
                self.channel_patterns.clear();
            }
            "reset" => {
                *self = User::new(&self.name);
                self.apply("resetchannels")?;
            }
            _ => return self.apply_valued(rule),
        }
        Ok(())
    }

    fn apply_valued(&mut self, rule: &str) -> Result<(), String> {
        let (first, value) = rule.split_at(1);
        match first {
            ">" => {
                self.bounded(self.passwords.len())?;
                let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
                if !self.passwords.contains(&digest) {
                    self.passwords.push(digest);
                }
                self.nopass = false;
            }
            "<" => {
                let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
                if !self.passwords.contains(&digest) {
                    return Err("no such password".into());
                }
                self.passwords.retain(|known| *known != digest);
            }
            "#" | "!" => {
                let mut digest = [0u8; 32];
                if value.len() != 64 || hex::decode_to_slice(value, &mut digest).is_err() {
                    return Err("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters".into());
                }
                if first == "#" {
                    self.bounded(self.passwords.len())?;
                    if !self.passwords.contains(&digest) {
                        self.passwords.push(digest);
                    }
                    self.nopass = false;
                } else {
                    if !self.passwords.contains(&digest) {
                        return Err("no such password".into());
                    }
                    self.passwords.retain(|known| *known != digest);
                }
            }
            "~" => {
                self.bounded(self.key_patterns.len())?;
                if value == "*" {
                    self.allkeys = true;
                    self.key_patterns.clear();
                } else if !self.allkeys {
                    self.key_patterns
                        .push((value.to_owned(), Pattern::new(value.as_bytes())));
                }
            }
            "&" => self.grant_channels(value),
            "+" | "-" => {
                let allow = first == "+";
                let ids = command_set(value)?;
                for id in ids {
                    if allow {
                        self.allowed |= bit(id);
                    } else {
                        self.allowed &= !bit(id);
                    }
                }
                let canonical = format!("{first}{}", value.to_ascii_lowercase());
                if canonical == "+@all" || canonical == "-@all" {
                    self.command_rules.clear();
                }
                self.bounded(self.command_rules.len())?;
                self.command_rules.push(canonical);
            }
            _ => return Err("Syntax error".into()),
        }
        Ok(())
    }

    fn bounded(&self, count: usize) -> Result<(), String> {
        if count >= USER_RULES_MAX {
            return Err(format!("at most {USER_RULES_MAX} of these per user"));
        }
        Ok(())
    }

    /// Whether `password` is one of the user's (or it needs none). Constant time in the
    /// password: every stored digest is compared.
    pub fn password_matches(&self, password: &[u8]) -> bool {
        if self.nopass {
            return true;
        }
        let digest: [u8; 32] = Sha256::digest(password).into();
        let mut matched = subtle::Choice::from(0);
        for known in &self.passwords {
            matched |= known.ct_eq(&digest);
        }
        matched.into()
    }

    /// Whether it is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether it may run `id`.
    pub fn may_run(&self, id: CommandId) -> bool {
        self.allowed & bit(id) != 0
    }

    /// `&pattern`: channels it may use (`&*`: all of them).
    fn grant_channels(&mut self, pattern: &str) {
        if pattern == "*" {
            self.allchannels = true;
            self.channel_patterns.clear();
        } else if !self.allchannels {
            self.channel_patterns
                .push((pattern.to_owned(), Pattern::new(pattern.as_bytes())));
        }
    }

    /// Whether it may touch every key (`allkeys`): the server-wide cart event channels
    /// carry every cart's changes.
    pub fn may_access_all_keys(&self) -> bool {
        self.allkeys
    }

    /// Whether it may subscribe or publish to `channel`.
    pub fn may_use_channel(&self, channel: &[u8]) -> bool {
        self.allchannels
            || self
                .channel_patterns
                .iter()
                .any(|(_, pattern)| pattern.matches(channel))
    }

    /// Whether it may PSUBSCRIBE to `pattern`: as in Redis, only a pattern it was granted,
    /// word for word (a pattern may match channels a narrower grant would not).
    pub fn may_use_pattern(&self, pattern: &[u8]) -> bool {
        self.allchannels
            || self
                .channel_patterns
                .iter()
                .any(|(text, _)| text.as_bytes() == pattern)
    }

    /// Whether it may touch `key`.
    pub fn may_access(&self, key: &[u8]) -> bool {
        self.allkeys
            || self
                .key_patterns
                .iter()
                .any(|(_, pattern)| pattern.matches(key))
    }

    /// Whether it is on and needs no password: a new connection is logged in as `default`
    /// when that user is.
    pub fn open_to_all(&self) -> bool {
        self.enabled && self.nopass
    }

    fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        if self.allkeys {
            flags.push("allkeys");
        }
        if self.allchannels {
            flags.push("allchannels");
        }
        flags
    }

    fn channels_text(&self) -> String {
        if self.allchannels {
            "&*".into()
        } else {
            self.channel_patterns
                .iter()
                .map(|(text, _)| format!("&{text}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    fn commands_text(&self) -> String {
        if self.command_rules.is_empty() {
            "-@all".into()
        } else {
            self.command_rules.join(" ")
        }
    }

    fn keys_text(&self) -> String {
        if self.allkeys {
            "~*".into()
        } else {
            self.key_patterns
                .iter()
                .map(|(text, _)| format!("~{text}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    /// The user as a line of an ACL file (`user name on #... ~cart:* +@cart`).
    pub fn describe(&self) -> String {
        let mut words = vec![format!("user {}", self.name)];
        words.push((if self.enabled { "on" } else { "off" }).into());
        if self.nopass {
            words.push("nopass".into());
        }
        for digest in &self.passwords {
            words.push(format!("#{}", hex::encode(digest)));
        }
        let keys = self.keys_text();
        if !keys.is_empty() {
            words.push(keys);
        } else {
            words.push("resetkeys".into());
        }
        let channels = self.channels_text();
        if channels.is_empty() {
            words.push("resetchannels".into());
        } else {
            words.push(channels);
        }
        words.push(self.commands_text());
        words.join(" ")
    }

    /// ACL GETUSER's fields, in Redis's order.
    pub fn details(&self) -> UserDetails {
        UserDetails {
            flags: self.flags(),
            passwords: self.passwords.iter().map(hex::encode).collect(),
            commands: self.commands_text(),
            keys: self.keys_text(),
            channels: self.channels_text(),
        }
    }
}

/// What ACL GETUSER shows of a user.
#[derive(Debug)]
pub struct UserDetails {
    /// `on`/`off`, `nopass`, `allkeys`.
    pub flags: Vec<&'static str>,
    /// Hex SHA-256 digests.
    pub passwords: Vec<String>,
    /// The command rules.
    pub commands: String,
    /// The key patterns.
    pub keys: String,
    /// The channel patterns (`&*` for every channel).
    pub channels: String,
}

/// The commands a rule names: `@category` (a Redis or cartd category, or `@all`) or a
/// command's name.
fn command_set(name: &str) -> Result<Vec<CommandId>, String> {
    let lower = name.to_ascii_lowercase();
    if let Some(category) = lower.strip_prefix('@') {
        if category == "all" {
            return Ok(COMMANDS.iter().map(|spec| spec.id).collect());
        }
        if !REDIS_CATEGORIES.contains(&category)
            && !CARTD_CATEGORIES.contains(&category)
            && !is_known_redis_category(category)
        {
            return Err("Unknown command or category name in ACL".into());
        }
        return Ok(commands_in(category));
    }
    if lower.contains('|') {
        return Err(
            "Allowing or denying a subcommand is not supported; allow or deny the whole command"
                .into(),
        );
    }
    match CommandSpec::lookup(lower.as_bytes()) {
        Some(spec) => Ok(vec![spec.id]),
        None => Err("Unknown command or category name in ACL".into()),
    }
}

/// Redis categories cartd has no command in (a rule may still name them).
fn is_known_redis_category(category: &str) -> bool {
    [
        "string",
        "list",
        "set",
        "sortedset",
        "hash",
        "stream",
        "bitmap",
        "hyperloglog",
        "geo",
        "pubsub",
        "blocking",
        "scripting",
        "transaction",
    ]
    .contains(&category)
}

/// The commands of `category` (without `@`).
pub fn commands_in(category: &str) -> Vec<CommandId> {
    COMMANDS
        .iter()
        .filter(|spec| spec.categories().contains(&category))
        .map(|spec| spec.id)
        .collect()
}

/// Why a request was denied, for the ACL LOG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The command is not allowed.
    Command,
    /// A key is not allowed.
    Key,
    /// AUTH failed.
    Auth,
    /// A pub/sub channel is not allowed.
    Channel,
}

impl Denial {
    fn reason(self) -> &'static str {
        match self {
            Denial::Command => "command",
            Denial::Key => "key",
            Denial::Auth => "auth",
            Denial::Channel => "channel",
        }
    }
}

/// One ACL LOG entry: identical denials in a row are counted on one entry, as Redis does.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// How many times it happened.
    pub count: u64,
    /// `command`, `key` or `auth`.
    pub reason: &'static str,
    /// The command's name, the key, or `AUTH`.
    pub object: String,
    /// Who.
    pub username: String,
    /// The client's CLIENT LIST line when it last happened.
    pub client_info: String,
    /// Its id, counting up.
    pub entry_id: u64,
    /// Unix ms when first and last seen.
    pub created_ms: u64,
    /// See `created_ms`.
    pub updated_ms: u64,
    updated: Instant,
}

impl LogEntry {
    /// Seconds since it last happened.
    pub fn age_s(&self) -> f64 {
        self.updated.elapsed().as_secs_f64()
    }
}

/// The users, the ACL LOG and the counters behind INFO.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<String, Arc<User>>>,
    /// Bumped on every change, so connections refresh their user.
    generation: AtomicU64,
    log: Mutex<VecDeque<LogEntry>>,
    next_entry_id: AtomicU64,
    /// Failed AUTH and HELLO AUTH attempts.
    pub auth_failures: AtomicU64,
    /// Commands refused for a missing command permission.
    pub denied_commands: AtomicU64,
    /// Commands refused for a key permission.
    pub denied_keys: AtomicU64,
    /// Subscriptions and publishes refused for a channel.
    pub denied_channels: AtomicU64,
    /// Where ACL SAVE writes and ACL LOAD reads, if anywhere.
    pub aclfile: Option<PathBuf>,
    /// The `default` user's password from the configuration (or CONFIG SET requirepass);
    /// ACL LOAD starts the `default` user from it.
    requirepass: Mutex<String>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Parses ACL file lines (`user name rules...`; blank lines and `#` comments skipped) into
/// users; the error names the line.
pub fn parse_users(text: &str, source: &str) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some("user"), Some(name)) = (words.next(), words.next()) else {
            return Err(format!(
                "{source}:{}: a line must be `user <name> <rules...>`",
                number + 1
            ));
        };
        let mut user = User::new(name);
        for rule in words {
            user.apply(rule)
                .map_err(|error| format!("{source}:{}: rule '{rule}': {error}", number + 1))?;
        }
        users.push(user);
    }
    Ok(users)
}

impl Acl {
    /// The users `config` names (`requirepass`, `[acl] users`, `[acl] aclfile`).
    pub fn from_config(config: &crate::config::Config) -> Result<Acl, String> {
        let aclfile = &config.acl.aclfile;
        let aclfile = (!aclfile.as_os_str().is_empty()).then(|| aclfile.clone());
        Acl::new(&config.server.requirepass, &config.acl.users, aclfile)
    }

    /// The users of the configuration: `default` (with `requirepass`), then `users` (ACL
    /// file lines from config.toml), then the `aclfile`'s, later lines replacing earlier
    /// users of the same name.
    pub fn new(
        requirepass: &str,
        users: &[String],
        aclfile: Option<PathBuf>,
    ) -> Result<Acl, String> {
        let acl = Acl {
            users: RwLock::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            log: Mutex::new(VecDeque::new()),
            next_entry_id: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            denied_commands: AtomicU64::new(0),
            denied_keys: AtomicU64::new(0),
            denied_channels: AtomicU64::new(0),
            aclfile,
            requirepass: Mutex::new(requirepass.to_owned()),
        };
        let mut all = vec![User::default_user(requirepass)];
        all.extend(parse_users(&users.join("\n"), "config.toml [acl] users")?);
        if let Some(path) = &acl.aclfile {
            if path.exists() {
                all.extend(acl.read_file()?);
            }
        }
        acl.replace_all(all);
        Ok(acl)
    }

    fn read_file(&self) -> Result<Vec<User>, String> {
        let path = self.aclfile.as_ref().ok_or_else(no_aclfile)?;
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read the ACL file {}: {error}", path.display()))?;
        parse_users(&text, &path.display().to_string())
    }

    fn replace_all(&self, users: Vec<User>) {
        let mut map = BTreeMap::new();
        map.insert(
            "default".to_owned(),
            Arc::new(User::default_user(&self.requirepass.lock())),
        );
        for user in users {
            map.insert(user.name.clone(), Arc::new(user));
        }
        *self.users.write() = map;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// `requirepass` as CONFIG GET shows it.
    pub fn requirepass(&self) -> String {
        self.requirepass.lock().clone()
    }

    /// CONFIG SET requirepass, as Redis does it: the `default` user's passwords become this
    /// one (`nopass` when empty); its other rules stay, and connected clients stay logged in.
    pub fn set_requirepass(&self, password: &str) {
        let mut users = self.users.write();
        let mut user = users
            .get("default")
            .map_or_else(|| User::default_user(""), |user| User::clone(user));
        let rule = if password.is_empty() {
            "nopass".to_owned()
        } else {
            format!(">{password}")
        };
        user.apply("resetpass")
            .and_then(|()| user.apply(&rule))
            .expect("resetpass and a password rule are always valid");
        users.insert("default".to_owned(), Arc::new(user));
        drop(users);
        password.clone_into(&mut self.requirepass.lock());
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current generation: a connection whose user is older looks it up again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The user called `name`, if any.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// The user if it exists, is on and `password` is one of its own.
    pub fn authenticate(&self, name: &str, password: &[u8]) -> Option<Arc<User>> {
        let user = self.user(name);
        // The digest is computed either way, so a missing user costs what a wrong password does.
        let matched = user.as_ref().map_or_else(
            || User::new("").password_matches(password),
            |user| user.password_matches(password),
        );
        user.filter(|user| user.enabled && matched)
    }

    /// ACL SETUSER: applies `rules` to a copy of the user (a new one if none) and only then
    /// replaces it, so a bad rule changes nothing.
    pub fn set_user(&self, name: &str, rules: &[String]) -> Result<(), String> {
        let mut users = self.users.write();
        if !users.contains_key(name) && users.len() >= USERS_MAX {
            return Err(format!("at most {USERS_MAX} users"));
        }
        let mut user = users
            .get(name)
            .map_or_else(|| User::new(name), |user| User::clone(user));
        for rule in rules {
            user.apply(rule)
                .map_err(|error| format!("Error in ACL SETUSER modifier '{rule}': {error}"))?;
        }
        users.insert(name.to_owned(), Arc::new(user));
        drop(users);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// ACL DELUSER: how many of `names` existed; `default` cannot go.
    pub fn delete_users(&self, names: &[String]) -> Result<usize, String> {
        if names.iter().any(|name| name == "default") {
            return Err("The 'default' user cannot be removed".into());
        }
        let mut users = self.users.write();
        let removed = names
            .iter()
            .filter(|name| users.remove(name.as_str()).is_some())
            .count();
        drop(users);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(removed)
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.read().values().cloned().collect()
    }

    /// ACL SAVE: writes every user to the ACL file (through a temporary file, renamed).
    pub fn save(&self) -> Result<(), String> {
        let path = self.aclfile.as_ref().ok_or_else(no_aclfile)?;
        let text: String = self
            .users()
            .iter()
            .map(|user| user.describe() + "\n")
            .collect();
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|error| format!("cannot write the ACL file {}: {error}", path.display()))
    }

    /// ACL LOAD: replaces every user with the ACL file's, or changes nothing if it is wrong.
    pub fn load(&self) -> Result<(), String> {
        let users = self.read_file()?;
        self.replace_all(users);
        Ok(())
    }

    /// Notes a denial (or failed AUTH) in the ACL LOG and the counters.
    pub fn log_denial(&self, denial: Denial, object: &str, username: &str, client_info: String) {
        match denial {
            Denial::Auth => self.auth_failures.fetch_add(1, Ordering::Relaxed),
            Denial::Command => self.denied_commands.fetch_add(1, Ordering::Relaxed),
            Denial::Key => self.denied_keys.fetch_add(1, Ordering::Relaxed),
            Denial::Channel => self.denied_channels.fetch_add(1, Ordering::Relaxed),
        };
        let now = now_unix_ms();
        let mut log = self.log.lock();
        if let Some(last) = log.front_mut() {
            if last.reason == denial.reason() && last.object == object && last.username == username
            {
                last.count += 1;
                last.updated_ms = now;
                last.updated = Instant::now();
                last.client_info = client_info;
                return;
            }
        }
        log.push_front(LogEntry {
            count: 1,
            reason: denial.reason(),
            object: object.to_owned(),
            username: username.to_owned(),
            client_info,
            entry_id: self.next_entry_id.fetch_add(1, Ordering::Relaxed),
            created_ms: now,
            updated_ms: now,
            updated: Instant::now(),
        });
        log.truncate(LOG_ENTRIES_MAX);
    }

    /// The newest `count` log entries (all without a count).
    pub fn log_entries(&self, count: Option<usize>) -> Vec<LogEntry> {
        let log = self.log.lock();
        log.iter()
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// ACL LOG RESET.
    pub fn reset_log(&self) {
        self.log.lock().clear();
    }
}

fn no_aclfile() -> String {
    "This instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a configuration file set) in order to store users in the configuration.".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_build_a_user() {
        let mut user = User::new("storefront");
        for rule in ["on", ">pw", "~cart:*", "+@cart", "-cart.checkout"] {
            user.apply(rule).unwrap();
        }
        assert!(user.password_matches(b"pw"));
        assert!(!user.password_matches(b"pw2"));
        assert!(user.may_run(CommandId::CartAdd));
        assert!(!user.may_run(CommandId::CartCheckout));
        assert!(!user.may_run(CommandId::Config));
        assert!(user.may_access(b"cart:1"));
        assert!(!user.may_access(b"other"));
        assert_eq!(
            user.describe(),
            format!(
                "user storefront on #{} ~cart:* resetchannels +@cart -cart.checkout",
                hex::encode(Sha256::digest(b"pw"))
            )
        );
        // No channel until granted, as Redis 7's acl-pubsub-default.
        assert!(!user.may_use_channel(b"__cart__:cart:1"));
        user.apply("&__cart__:*").unwrap();
        assert!(user.may_use_channel(b"__cart__:cart:1"));
        assert!(!user.may_use_pattern(b"__cart__:cart:*"));
        assert!(user.may_use_pattern(b"__cart__:*"));
        assert!(user.apply("+nosuch").is_err());
        assert!(user.apply("bogus").is_err());
        user.apply("reset").unwrap();
        assert!(!user.may_run(CommandId::CartAdd) && !user.password_matches(b"pw"));
    }

    #[test]
    fn a_file_round_trips() {
        let text = "user a on nopass ~* &* +@all\nuser b off #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~cart:* +@read\n";
        let users = parse_users(text, "test").unwrap();
        let again: String = users.iter().map(|user| user.describe() + "\n").collect();
        let reparsed = parse_users(&again, "test").unwrap();
        assert_eq!(
            reparsed.iter().map(User::describe).collect::<Vec<_>>(),
            users.iter().map(User::describe).collect::<Vec<_>>()
        );
        assert!(users[1].password_matches(b"password"));
    }
}
