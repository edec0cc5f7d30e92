//! Interned product and variant ids: a flash sale puts one product in 100K carts and it is
//! stored once. Ids are never freed (the set of products is small and slow-moving); the total
//! is bounded by [`NAMES_MAX`](crate::limits::NAMES_MAX).

use lasso::{Spur, ThreadedRodeo};
use protocol::CommandError;

use crate::limits::NAMES_MAX;

/// An interned product or variant id.
pub type NameId = Spur;

/// The server's interner.
#[derive(Debug)]
pub struct Names {
    rodeo: ThreadedRodeo<Spur>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            rodeo: ThreadedRodeo::new(),
        }
    }
}

impl Names {
    /// The id of `name`, interning it if new. The parser guarantees UTF-8.
    pub fn intern(&self, name: &[u8]) -> Result<NameId, CommandError> {
        let text =
            std::str::from_utf8(name).map_err(|_| CommandError::err("ids must be valid UTF-8"))?;
        if let Some(id) = self.rodeo.get(text) {
            return Ok(id);
        }
        if self.rodeo.len() >= NAMES_MAX {
            return Err(CommandError::limit(format!(
                "the server already knows {NAMES_MAX} distinct product and variant ids"
            )));
        }
        self.rodeo
            .try_get_or_intern(text)
            .map_err(|error| CommandError::limit(error.to_string()))
    }

    /// The id of `name` if it was ever interned (a lookup that must not grow the set).
    pub fn get(&self, name: &[u8]) -> Option<NameId> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|text| self.rodeo.get(text))
    }

    /// The text of an id.
    pub fn resolve(&self, id: NameId) -> &str {
        self.rodeo.resolve(&id)
    }

    /// How many ids are interned.
    pub fn len(&self) -> usize {
        self.rodeo.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
