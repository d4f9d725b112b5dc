//! End to end with real packets: a real `stockade serve`, a lab of network namespaces with
//! real agents programming nftables (`stockade lab up`), changes made through the ECS API, and
//! TCP, UDP and ICMP probes that must pass or not.
//!
//! Needs root, iproute2, nftables, conntrack and ping (`scripts/test` installs them). Set
//! `STOCKADE_SKIP_KERNEL=1` to skip on a machine without them. The labs use unique names and
//! are torn down (namespaces deleted, agents stopped) even when a test fails. The tests take
//! a lock so that one lab runs at a time: probes time out at 700 ms and a loaded machine
//! must not turn a slow answer into a false "blocked".

mod differential;
mod harness;
mod hits;
mod hostile;
mod interfaces;
mod metrics;
mod prefix_lists;
mod scenario;
mod tenancy;
