//! Stockade's policy engine: what ECS security groups do with a flow, and why.
//!
//! Pure: no I/O, no clocks, no threads. A [`State`] holds groups, rules, instances and
//! memberships and changes only through [`Change`]s. Two evaluators answer
//! [`Evaluator::verdict`] over it: [`Reference`], a direct transcription of the semantics
//! (DESIGN.md §4) that sorts and scans, and [`Engine`], which compiles each set of groups into
//! decision trees and keeps them current under incremental changes. They must agree on every
//! flow, including which rule decided; property tests check it.

pub mod audit;
mod compiled;
pub mod delta;
pub mod document;
pub mod exposure;
mod flow;
pub mod reach;
mod reference;
mod state;

pub use compiled::{Engine, Stage};
pub use flow::{
    DecidedBy, Decider, Decision, Endpoint, Evaluator, Flow, FlowVerdict, IpFamily, Packet,
    StageQuery, StageVerdict,
};
pub use reference::Reference;
pub use state::{
    Change, Cut, GroupEntry, GroupPolicy, PolicyError, PortRangeList, PrefixList, Share, Snapshot,
    State,
};
