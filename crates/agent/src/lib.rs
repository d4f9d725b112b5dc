//! Stockade's host agent: the security groups of the instances on this host, held in the
//! kernel.
//!
//! The agent long-polls the control plane's feed ([`feed`]) for its host's share of the
//! policy, finds each instance's interface from the host's routes ([`interfaces`]), and keeps
//! one nftables table equal to the rendering of both ([`Enforcer`]): every change one
//! atomic transaction, incremental when a previous ruleset is known, a full replacement after
//! drift or a restart, fail-closed for instances whose policy cannot be programmed. After a
//! change it ends tracked connections the new policy no longer allows ([`conntrack`]).
//! [`netns`] builds the lab: hosts and instances as network namespaces.
//!
//! Only this crate and `nft` start processes (`ip`, `conntrack`, `nft`).

pub mod conntrack;
mod daemon;
mod enforcer;
pub mod feed;
pub mod hits;
pub mod interfaces;
mod metrics;
pub mod netns;
pub mod probe;

pub use daemon::{run, AgentConfig};
pub use enforcer::{Enforcer, Outcome};
pub use metrics::Metrics;
/// How the agent writes policy chains (`stockade agent --rendering`).
pub use nft::Rendering;

use thiserror::Error;

/// The agent's error.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The control plane could not be reached or answered an error.
    #[error("feed: {0}")]
    Feed(String),
    /// The feed's policy did not parse or was inconsistent.
    #[error("policy: {0}")]
    Policy(String),
    /// nftables refused or could not be run.
    #[error(transparent)]
    Nft(#[from] netfilter::NftError),
    /// A helper command (`ip`, `conntrack`) failed.
    #[error("{0}")]
    Command(String),
}

/// Runs a command in the host's namespace: the current one, or `netns` (the lab runs every
/// agent in the root namespace, where the server is reachable, acting on its host's).
pub(crate) fn host_command(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
) -> Result<String, AgentError> {
    match netns {
        None => run_command(program, args),
        Some(ns) => netns::exec(ns, program, args),
    }
}

/// Runs a command to completion and returns its standard output, or its standard error as
/// the error.
pub(crate) fn run_command(program: &str, args: &[&str]) -> Result<String, AgentError> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| AgentError::Command(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(AgentError::Command(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
