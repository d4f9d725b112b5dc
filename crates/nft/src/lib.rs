//! Stockade's nftables layer: security-group policy rendered into one nftables table.
//!
//! [`render`] is a pure function from the policy of one host (a [`policy::State`] and the
//! interfaces of the instances placed there) to a [`Ruleset`] value. A ruleset prints as one
//! atomic `nft -f` script that replaces the whole table ([`Ruleset::full_script`]), or as
//! the smallest script that turns another ruleset into it ([`Ruleset::diff_script`]): a
//! member joining a group is then one set-element update. This crate does no I/O: the
//! `netfilter` crate applies the scripts to the kernel (libnftables, the `nft` program,
//! netlink) and holds the fake backend tests use.
//!
//! The table layout (DESIGN.md §6):
//! - `chain forward` (hook forward): established and related packets accepted first,
//!   invalid ones dropped, then the packet's input interface is dispatched through the
//!   verdict map `egress` and its output interface through `ingress`.
//! - One chain per distinct (ordered group list, interface type, direction): instances that
//!   share their groups share their chains. Rules appear in the engine's order; an egress
//!   accept is `return` so that the destination's ingress chain still judges the packet.
//! - Named sets of addresses for group references and intra-group access (`g4_…`, `g6_…`)
//!   and for prefix lists (`p4_…`, `p6_…`).
//! - An instance whose policy cannot be rendered maps to `drop`: fail closed.

pub mod counters;
mod flat;
mod render;

pub use flat::{VerdictMap, MAX_CELLS};
pub use render::{
    render, render_as, render_reusing, Attachment, Family, Rendering, Rule, Ruleset, Set,
    SetElements, SetKind, SetName, SetType, Verdict, Zones, ARP_TABLE, MAX_ELEMENTS, TABLE,
};
