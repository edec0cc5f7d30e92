//! `COMMAND DOCS` argument trees, derived from each table row's syntax string so the docs
//! cannot drift from what the parsers were written against. redis-cli builds its hints from
//! these trees.

use crate::reply::Reply;

/// One argument of a command, as `COMMAND DOCS` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDoc {
    /// Argument name.
    pub name: String,
    /// Redis argument type: `key`, `string`, `integer`, `pure-token`, `oneof`, `block`.
    pub kind: &'static str,
    /// The literal token that precedes the value, if any.
    pub token: Option<String>,
    /// May be left out.
    pub optional: bool,
    /// May repeat.
    pub multiple: bool,
    /// Members of a `oneof` or `block`.
    pub children: Vec<ArgDoc>,
}

/// Parses a syntax string such as `key [COUNT count] [NOSAVE|SAVE]`.
pub fn parse_syntax(syntax: &str) -> Vec<ArgDoc> {
    let spaced = syntax.replace('[', " [ ").replace(']', " ] ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut position = 0;
    parse_sequence(&words, &mut position)
}

fn parse_sequence(words: &[&str], position: &mut usize) -> Vec<ArgDoc> {
    let mut sequence: Vec<ArgDoc> = Vec::new();
    while *position < words.len() {
        let word = words[*position];
        *position += 1;
        match word {
            "]" => break,
            "[" => {
                let inner = parse_sequence(words, position);
                sequence.push(group(inner));
            }
            "..." => {
                if let Some(last) = sequence.last_mut() {
                    last.multiple = true;
                }
            }
            _ => sequence.push(word_doc(word)),
        }
    }
    sequence
}

fn group(mut inner: Vec<ArgDoc>) -> ArgDoc {
    let mut doc = match inner.len() {
        1 => inner.remove(0),
        2 if inner[0].kind == "pure-token" => {
            let token = inner.remove(0);
            let mut value = inner.remove(0);
            value.token = token.token;
            value
        }
        _ => ArgDoc {
            name: inner
                .first()
                .map(|first| first.name.clone())
                .unwrap_or_default(),
            kind: "block",
            token: None,
            optional: false,
            multiple: false,
            children: inner,
        },
    };
    doc.optional = true;
    doc
}

fn word_doc(word: &str) -> ArgDoc {
    let plain = |name: &str, kind: &'static str, token: Option<String>| ArgDoc {
        name: name.to_ascii_lowercase(),
        kind,
        token,
        optional: false,
        multiple: false,
        children: Vec::new(),
    };
    if word.contains('|') {
        let mut doc = plain(word.split('|').next().unwrap_or(word), "oneof", None);
        doc.name = word.to_ascii_lowercase().replace('|', "-or-");
        doc.children = word
            .split('|')
            .map(|option| plain(option, "pure-token", Some(option.into())))
            .collect();
        return doc;
    }
    if word.chars().any(|c| c.is_ascii_uppercase()) {
        return plain(word, "pure-token", Some(word.to_string()));
    }
    let kind = match word {
        "key" | "guest_key" | "user_key" => "key",
        "qty" | "n" | "count" | "cursor" | "version" | "price_minor" | "balance_minor"
        | "seconds" | "index" | "protover" => "integer",
        _ => "string",
    };
    plain(word, kind, None)
}

impl ArgDoc {
    /// The map `COMMAND DOCS` sends for this argument.
    pub fn to_reply(&self) -> Reply {
        let mut fields = vec![
            (Reply::from_static("name"), Reply::text(self.name.clone())),
            (Reply::from_static("type"), Reply::from_static(self.kind)),
        ];
        if let Some(token) = &self.token {
            fields.push((Reply::from_static("token"), Reply::text(token.clone())));
        }
        let mut flags = Vec::new();
        if self.optional {
            flags.push(Reply::Simple("optional".into()));
        }
        if self.multiple {
            flags.push(Reply::Simple("multiple".into()));
        }
        if !flags.is_empty() {
            fields.push((Reply::from_static("flags"), Reply::Array(flags)));
        }
        if !self.children.is_empty() {
            let children = self.children.iter().map(ArgDoc::to_reply).collect();
            fields.push((Reply::from_static("arguments"), Reply::Array(children)));
        }
        Reply::Map(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row's syntax names as many required arguments as its arity asks for, so
    /// `COMMAND DOCS` and the arity check agree.
    #[test]
    fn every_syntax_agrees_with_its_arity() {
        for spec in crate::cmd::COMMANDS {
            let docs = parse_syntax(spec.syntax);
            let required = docs.iter().filter(|doc| !doc.optional).count();
            assert_eq!(
                required + 1,
                spec.arity.unsigned_abs() as usize,
                "{}",
                spec.name
            );
            if spec.arity > 0 {
                assert!(docs.iter().all(|doc| !doc.optional), "{}", spec.name);
            }
        }
    }

    #[test]
    fn checkout_and_code_syntaxes_have_typed_arguments() {
        let spec = |id: crate::CommandId| parse_syntax(id.spec().syntax);
        let checkout = spec(crate::CommandId::CartCheckout);
        assert_eq!(checkout[1].token.as_deref(), Some("HOLD"));
        assert_eq!(checkout[1].kind, "integer");
        let promo = spec(crate::CommandId::CartPromo);
        assert_eq!(promo[1].kind, "oneof");
        assert_eq!(promo[1].name, "add-or-remove");
        assert_eq!(promo[2].kind, "string");
        let complete = spec(crate::CommandId::CartComplete);
        assert_eq!(complete[2].token.as_deref(), Some("ORDER"));
        assert_eq!(spec(crate::CommandId::GiftCardSet)[1].kind, "integer");
    }

    #[test]
    fn options_become_tokens_blocks_and_oneofs() {
        let docs = parse_syntax("key product variant qty [PRICE price_minor CURRENCY currency] [IFVERSION version] [REPLY CART|VERSION|NONE] [key ...]");
        assert_eq!(docs[0].kind, "key");
        assert_eq!(docs[3].kind, "integer");
        assert_eq!(docs[4].kind, "block");
        assert!(docs[4].optional);
        assert_eq!(docs[4].children.len(), 4);
        assert_eq!(docs[5].token.as_deref(), Some("IFVERSION"));
        assert_eq!(docs[5].name, "version");
        assert_eq!(docs[6].kind, "oneof");
        assert_eq!(docs[6].token.as_deref(), Some("REPLY"));
        assert_eq!(docs[6].children.len(), 3);
        assert!(docs[7].multiple && docs[7].optional);
    }
}
