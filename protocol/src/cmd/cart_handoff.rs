//! `CART.HANDOFF guest_key user_key` and `CART.HANDOFF.DONE guest_key id`: the internal
//! commands of a `CART.MERGE` across cluster nodes, sent by the user cart's node to the guest
//! cart's (docs/CLUSTER.md, "CART.MERGE across nodes").

use bytes::Bytes;

use crate::args::Args;
use crate::error::CommandError;

/// Hands a guest cart off to the node of the user cart it is merged into: the guest cart is
/// removed and kept, for that user cart, until [`CartHandoffDone`].
#[derive(Debug, PartialEq)]
pub struct CartHandoff {
    /// The guest cart (served by the node that runs this).
    pub guest_key: Bytes,
    /// The user cart it is merged into (served by the node that asks).
    pub user_key: Bytes,
}

impl CartHandoff {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartHandoff, CommandError> {
        let guest_key = args.next_key()?;
        let user_key = args.next_key()?;
        if guest_key == user_key {
            return Err(CommandError::err("cannot merge a cart into itself"));
        }
        Ok(CartHandoff {
            guest_key,
            user_key,
        })
    }
}

/// The merge of a handed-off guest cart is durable on the user cart's node: the guest cart's
/// node lets the handoff go.
#[derive(Debug, PartialEq)]
pub struct CartHandoffDone {
    /// The guest cart.
    pub guest_key: Bytes,
    /// The handoff's id, as `CART.HANDOFF` replied it.
    pub id: Bytes,
}

impl CartHandoffDone {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartHandoffDone, CommandError> {
        let guest_key = args.next_key()?;
        let id = args.next_bytes()?;
        if id.is_empty() || id.len() > crate::TOKEN_BYTES_MAX {
            return Err(CommandError::limit(format!(
                "a handoff id has 1..={} bytes",
                crate::TOKEN_BYTES_MAX
            )));
        }
        Ok(CartHandoffDone { guest_key, id })
    }
}
