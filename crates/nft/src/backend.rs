//! Applying scripts: the real `nft` and an in-memory fake.
//!
//! Scripts go to `nft -f -` as text. Measured on this machine for the same ruleset (see
//! `ARCHITECTURE.md`), the text parser was as fast as the JSON one and the text is what an
//! operator reads in `nft list ruleset`, so the renderer, its snapshot tests and the backend
//! all speak text. Each `nft -f` run is one netlink batch: one atomic transaction.
//!
//! This module is the one place of the `nft` crate that starts processes; the renderer is
//! pure, which `clippy.toml` enforces everywhere else in the crate.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::Write;
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::TABLE;

/// Why nftables refused or could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NftError {
    /// `nft` could not be started.
    #[error("cannot run nft: {0}")]
    Spawn(String),
    /// The kernel or `nft` rejected the transaction (nothing of it was applied).
    #[error("nft rejected the transaction: {0}")]
    Rejected(String),
}

/// Where rulesets are applied.
pub trait Backend {
    /// Applies one script as one atomic transaction.
    fn apply(&mut self, script: &str) -> Result<(), NftError>;
    /// Checks a script without applying it.
    fn check(&mut self, script: &str) -> Result<(), NftError>;
    /// The table as the kernel holds it now, as text (empty when it does not exist), so
    /// drift from what was applied can be seen.
    fn list(&mut self) -> Result<String, NftError>;
    /// Removes the table (and with it all enforcement).
    fn delete_table(&mut self) -> Result<(), NftError>;
}

/// The `nft` command in the current network namespace.
#[derive(Debug, Clone)]
pub struct NftCli {
    /// The command line up to and including `nft`.
    command: Vec<String>,
}

impl Default for NftCli {
    fn default() -> Self {
        NftCli {
            command: vec!["nft".into()],
        }
    }
}

impl NftCli {
    /// `nft` inside a named network namespace (`ip netns exec NAME nft`): for tools and
    /// tests that program a namespace they are not running in.
    pub fn in_netns(name: &str) -> NftCli {
        NftCli {
            command: ["ip", "netns", "exec", name, "nft"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| NftError::Spawn(e.to_string()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| NftError::Spawn(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| NftError::Spawn(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NftError::Rejected(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }
}

impl Backend for NftCli {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script)).map(drop)
    }

    fn check(&mut self, script: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], Some(script)).map(drop)
    }

    fn list(&mut self) -> Result<String, NftError> {
        match self.run(&["list", "table", "inet", TABLE], None) {
            Ok(text) => Ok(text),
            Err(NftError::Rejected(e)) if e.contains("No such file") => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    fn delete_table(&mut self) -> Result<(), NftError> {
        match self.run(&["delete", "table", "inet", TABLE], None) {
            Err(NftError::Rejected(e)) if e.contains("No such file") => Ok(()),
            other => other.map(drop),
        }
    }
}

/// A backend that keeps the scripts it was given, for testing what drives it. Its "kernel
/// state" is the list of transactions applied since the table was last created; a test can
/// edit [`FakeBackend::listing`] to simulate a hand edit, or set
/// [`FakeBackend::reject`] to make transactions fail.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    /// Every script applied, in order.
    pub applied: Vec<String>,
    /// What `list` returns.
    pub listing: String,
    /// Scripts containing this text are rejected (as the kernel would reject a bad rule).
    pub reject: Option<String>,
}

impl FakeBackend {
    fn refuse(&self, script: &str) -> Result<(), NftError> {
        match &self.reject {
            Some(bad) if script.contains(bad.as_str()) => {
                Err(NftError::Rejected(format!("fake refuses {bad}")))
            }
            _ => Ok(()),
        }
    }
}

impl Backend for FakeBackend {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.refuse(script)?;
        self.applied.push(script.to_string());
        self.listing = format!("table inet {TABLE} # transaction {}", self.applied.len());
        Ok(())
    }

    fn check(&mut self, script: &str) -> Result<(), NftError> {
        self.refuse(script)
    }

    fn list(&mut self) -> Result<String, NftError> {
        Ok(self.listing.clone())
    }

    fn delete_table(&mut self) -> Result<(), NftError> {
        self.listing.clear();
        Ok(())
    }
}
