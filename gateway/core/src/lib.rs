//! Warden's core: the normalized message every adapter produces, the assurance it carries, the verdict
//! the gateway reaches on it, and the [`Adapter`] interface.
//!
//! This crate is deliberately small (serde, thiserror, tokio's `sync` and libc only): every protocol adapter
//! depends on it, so it must build in seconds. Nothing protocol-specific lives here.

pub mod adapter;
pub mod files;
pub mod id;
pub mod message;
pub mod operation;
pub mod testing;
pub mod text;
pub mod verdict;

pub use adapter::{
    Adapter, AdapterContext, AdapterError, AdapterEvent, Announcement, BoxFuture, CommandHeld,
    CredentialLookup, Downlink, LinkHealth, LinkState, Membership, MembershipChange, Notice,
    Rejection, Secret, StateError, StateStore,
};
pub use id::{DeviceId, IdError};
pub use message::{
    Assurance, Command, CommandOutcome, CommandResult, Direction, Kind, LinkMeta, Message, Point,
    Value, now_ms,
};
pub use operation::{
    DskPin, Operation, OperationKind, OperationProgress, OperationRequest, OperationState,
    ProgressSender,
};
pub use verdict::{Decision, Verdict};
