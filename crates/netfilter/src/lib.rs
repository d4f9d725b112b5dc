//! The kernel side of Stockade's nftables layer: what the pure `nft` crate renders, applied.
//!
//! [`Backend`] applies scripts as atomic transactions: [`NftCli`] through libnftables in
//! this process (`libnft`, loaded with `dlopen`) or the `nft` program, sends set element
//! changes as one netlink batch and lists tracked connections over ctnetlink (`netlink`),
//! in this network namespace or another; [`FakeBackend`] records scripts for tests. This is
//! the crate of the nftables layer that starts processes and opens sockets, so that `nft`
//! stays pure (enforced by the crate graph: `nft` does not depend on this one).

mod backend;
mod libnft;
mod netlink;

pub use backend::{Backend, FakeBackend, NftCli, NftError, Tracked};
