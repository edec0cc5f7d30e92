//! Pub/sub commands with arguments: `PUBLISH` and the `PUBSUB` introspection subcommands
//! (SUBSCRIBE and its kin take their channel names as they come).

use bytes::Bytes;

use super::{Command, CommandId};
use crate::args::Args;
use crate::error::CommandError;

/// Parses the pub/sub commands (and MONITOR, which listens as they do).
pub(super) fn parse(id: CommandId, args: &mut Args) -> Result<Command, CommandError> {
    Ok(match id {
        CommandId::Subscribe => Command::Subscribe(args.rest()),
        CommandId::Unsubscribe => Command::Unsubscribe(args.rest()),
        CommandId::PSubscribe => Command::PSubscribe(args.rest()),
        CommandId::PUnsubscribe => Command::PUnsubscribe(args.rest()),
        CommandId::Publish => Command::Publish(Publish::parse(args)?),
        CommandId::PubSub => Command::PubSub(PubSubCommand::parse(args)?),
        CommandId::Monitor => Command::Monitor,
        _ => unreachable!("only pub/sub commands are parsed here"),
    })
}

/// `PUBLISH channel message`.
#[derive(Debug, PartialEq)]
pub struct Publish {
    /// The channel.
    pub channel: Bytes,
    /// What every subscriber receives.
    pub message: Bytes,
}

impl Publish {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<Publish, CommandError> {
        Ok(Publish {
            channel: args.next_bytes()?,
            message: args.next_bytes()?,
        })
    }
}

/// `PUBSUB` subcommands.
#[derive(Debug, PartialEq)]
pub enum PubSubCommand {
    /// `PUBSUB CHANNELS [pattern]`: channels with at least one subscriber.
    Channels(Option<Bytes>),
    /// `PUBSUB NUMSUB [channel ...]`: subscribers of each channel.
    NumSub(Vec<Bytes>),
    /// `PUBSUB NUMPAT`: patterns subscribed to.
    NumPat,
    /// `PUBSUB HELP`.
    Help,
}

impl PubSubCommand {
    /// Parses the arguments after `PUBSUB`.
    pub fn parse(args: &mut Args) -> Result<PubSubCommand, CommandError> {
        let sub = args.next_bytes()?;
        let is = |name: &str| sub.eq_ignore_ascii_case(name.as_bytes());
        if is("CHANNELS") {
            let pattern = args.next_if_any();
            if args.remaining() > 0 {
                return Err(CommandError::arity("pubsub|channels"));
            }
            return Ok(PubSubCommand::Channels(pattern));
        }
        if is("NUMSUB") {
            return Ok(PubSubCommand::NumSub(args.rest()));
        }
        if is("NUMPAT") {
            if args.remaining() > 0 {
                return Err(CommandError::arity("pubsub|numpat"));
            }
            return Ok(PubSubCommand::NumPat);
        }
        if is("HELP") {
            return Ok(PubSubCommand::Help);
        }
        Err(CommandError::err(format!(
            "unknown subcommand '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&sub)
        )))
    }
}
