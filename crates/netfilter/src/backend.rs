//! Applying scripts: the real `nft` and an in-memory fake.
//!
//! Scripts go to nftables as `nft -f` text: through libnftables in this process when it
//! can be loaded (`libnft`), else to the `nft -f -` program. Measured on this machine for the same ruleset (see
//! `ARCHITECTURE.md`), the text parser was as fast as the JSON one and the text is what an
//! operator reads in `nft list ruleset`, so the renderer, its snapshot tests and the backend
//! all speak text. Each `nft -f` run is one netlink batch: one atomic transaction.
//!
//! This crate, not `nft`, starts processes and opens sockets: the renderer stays pure, which
//! the crate graph and `nft`'s `clippy.toml` enforce.

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use nft::{SetElements, ARP_TABLE, TABLE};

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

/// One tracked connection, in its original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// IANA protocol number.
    pub protocol: u8,
    /// Who opened it.
    pub source: IpAddr,
    /// To whom.
    pub destination: IpAddr,
    /// TCP/UDP source port (0 otherwise).
    pub source_port: u16,
    /// TCP/UDP destination port (0 otherwise).
    pub destination_port: u16,
    /// Its conntrack zone (the VPC's on this host; 0 for the classic network).
    pub zone: u16,
}

/// Where rulesets are applied.
pub trait Backend {
    /// Applies one script as one atomic transaction.
    fn apply(&mut self, script: &str) -> Result<(), NftError>;
    /// Checks a script without applying it.
    fn check(&mut self, script: &str) -> Result<(), NftError>;
    /// The tables as the kernel holds them now, as text (empty when they do not exist), so
    /// drift from what was applied can be seen.
    fn list(&mut self) -> Result<String, NftError>;
    /// Removes the tables (and with them all enforcement).
    fn delete_table(&mut self) -> Result<(), NftError>;
    /// The table's named counters with their values, as `nft list counters` prints them
    /// (empty when the table does not exist, or the backend keeps none): see
    /// [`nft::counters::parse_counters`].
    fn list_counters(&mut self) -> Result<String, NftError> {
        Ok(String::new())
    }
    /// Applies set element changes ([`nft::Ruleset::element_changes`]) as one atomic
    /// transaction; `script` is the same change as text, which is what a backend without a
    /// faster way applies.
    fn apply_elements(&mut self, changes: &[SetElements], script: &str) -> Result<(), NftError> {
        let _ = changes;
        self.apply(script)
    }
    /// The kernel's ruleset generation, which every committed transaction changes, when the
    /// backend can read it cheaply (`None` otherwise): while it stays the same, the table is
    /// as the last transaction left it, without listing it.
    fn generation(&mut self) -> Result<Option<u32>, NftError> {
        Ok(None)
    }
    /// The connections the namespace tracks, when the backend can list them itself
    /// (`None`: the caller asks `conntrack`).
    fn tracked_connections(&mut self) -> Option<Result<Vec<Tracked>, NftError>> {
        None
    }
}

/// nftables (its library in this process, else the `nft` command) in the current network
/// namespace, or in a named one.
#[derive(Debug, Clone, Default)]
pub struct NftCli {
    /// Where `nft` runs, when not in this process's own network namespace.
    netns: Option<Arc<Runner>>,
    /// The netfilter netlink socket of set element changes, once opened (in the namespace).
    netlink: Arc<Mutex<Option<OwnedFd>>>,
    /// Start the `nft` program even where its library can be used in this process.
    program: bool,
}

/// Work for the namespace's thread.
type Job = Box<dyn FnOnce() + Send>;

/// A thread that has entered a network namespace and starts `nft` from there, so that every
/// `nft` it starts is born in that namespace: no `ip netns exec` or `nsenter` between (each
/// a process of its own, which cost more than `nft` itself: ~10 ms against ~4 ms here).
#[derive(Debug)]
struct Runner {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Why the thread could not enter the namespace, if it could not.
    failed: Mutex<Option<String>>,
}

impl NftCli {
    /// `nft` inside a named network namespace (`/run/netns/NAME`, as `ip netns add` makes
    /// it): for the lab's agents, tools and tests that program a namespace they are not
    /// running in.
    pub fn in_netns(name: &str) -> NftCli {
        let (tx, rx) = mpsc::channel::<Job>();
        let runner = Arc::new(Runner {
            jobs: Mutex::new(tx),
            failed: Mutex::new(None),
        });
        let path = format!("/run/netns/{name}");
        let (entered_tx, entered_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let entered = std::fs::File::open(&path)
                .map_err(|e| format!("{path}: {e}"))
                .and_then(|ns| {
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&ns),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .map_err(|e| format!("cannot enter {path}: {e}"))
                });
            let _ = entered_tx.send(entered);
            for job in rx {
                job();
            }
        });
        if let Ok(Err(why)) = entered_rx.recv() {
            *runner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        }
        NftCli {
            netns: Some(runner),
            netlink: Arc::default(),
            program: false,
        }
    }

    /// The same, always starting the `nft` program rather than using its library in this
    /// process (the baseline benchmarks measure against).
    pub fn program(self) -> NftCli {
        NftCli {
            program: true,
            ..self
        }
    }

    /// Runs `f` on the namespace's netfilter netlink socket, opened on first use. The
    /// socket is kept only after a clean exchange: after an error it may still hold answers.
    fn with_netlink<T>(
        &self,
        f: impl FnOnce(&OwnedFd) -> Result<T, NftError>,
    ) -> Result<T, NftError> {
        let mut held = self.netlink.lock().unwrap_or_else(|e| e.into_inner());
        let socket = match held.take() {
            Some(socket) => socket,
            // Opened in the namespace: a socket belongs to the namespace it was made in.
            None => self.inside(crate::netlink::socket)?,
        };
        let out = f(&socket)?;
        *held = Some(socket);
        Ok(out)
    }

    /// Runs `f` in the namespace (in its thread), or here when there is none.
    fn inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, NftError> + Send + 'static,
    ) -> Result<T, NftError> {
        let Some(runner) = &self.netns else {
            return f();
        };
        if let Some(why) = &*runner.failed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(NftError::Spawn(why.clone()));
        }
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let sent = runner
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job);
        sent.map_err(|_| NftError::Spawn("the namespace's nft thread is gone".into()))?;
        rx.recv()
            .map_err(|_| NftError::Spawn("the namespace's nft thread is gone".into()))?
    }

    /// Whether scripts go through the nftables library in this process (else the `nft`
    /// program is started for each).
    pub fn uses_library(&self) -> bool {
        !self.program && crate::libnft::available()
    }

    /// Runs `nft` with `args` (and `stdin`, for `-f -`): through its library in this process
    /// when it is there (see `libnft`), else the program.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let library = self.uses_library();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        self.inside(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if library {
                let commands = match args.contains(&"-f") {
                    true => stdin.clone().unwrap_or_default(),
                    false => args.join(" "),
                };
                if let Some(done) = crate::libnft::run(&commands, args.contains(&"-c")) {
                    return done;
                }
            }
            run_nft(&args, stdin.as_deref())
        })
    }
}

/// Starts `nft` with `args` (in the calling thread's network namespace), feeding it `stdin`.
fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let mut child = Command::new("nft")
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

impl Backend for NftCli {
    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script)).map(drop)
    }

    fn check(&mut self, script: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], Some(script)).map(drop)
    }

    fn list(&mut self) -> Result<String, NftError> {
        let mut out = String::new();
        for (family, table) in [("inet", TABLE), ("arp", ARP_TABLE)] {
            match self.run(&["list", "table", family, table], None) {
                Ok(text) => out.push_str(&text),
                Err(NftError::Rejected(e)) if e.contains("No such file") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn list_counters(&mut self) -> Result<String, NftError> {
        match self.run(&["list", "counters", "table", "inet", TABLE], None) {
            Err(NftError::Rejected(e)) if e.contains("No such file") => Ok(String::new()),
            other => other,
        }
    }

    fn delete_table(&mut self) -> Result<(), NftError> {
        for (family, table) in [("inet", TABLE), ("arp", ARP_TABLE)] {
            match self.run(&["delete", "table", family, table], None) {
                Err(NftError::Rejected(e)) if e.contains("No such file") => {}
                other => other.map(drop)?,
            }
        }
        Ok(())
    }

    /// Sent over netlink from this process (see `netlink`): no `nft` started.
    fn apply_elements(&mut self, changes: &[SetElements], _script: &str) -> Result<(), NftError> {
        self.with_netlink(|socket| crate::netlink::apply(socket, changes))
    }

    fn generation(&mut self) -> Result<Option<u32>, NftError> {
        self.with_netlink(crate::netlink::generation).map(Some)
    }

    fn tracked_connections(&mut self) -> Option<Result<Vec<Tracked>, NftError>> {
        Some(self.with_netlink(crate::netlink::tracked_connections))
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
    /// The ruleset generation, when the fake reads it (`None`: as a backend that cannot);
    /// every transaction moves it, and a test moves it to simulate another program's.
    pub generation: Option<u32>,
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
        if let Some(g) = &mut self.generation {
            *g += 1;
        }
        Ok(())
    }

    fn generation(&mut self) -> Result<Option<u32>, NftError> {
        Ok(self.generation)
    }

    fn check(&mut self, script: &str) -> Result<(), NftError> {
        self.refuse(script)
    }

    fn list(&mut self) -> Result<String, NftError> {
        Ok(self.listing.clone())
    }

    fn delete_table(&mut self) -> Result<(), NftError> {
        self.listing.clear();
        if let Some(g) = &mut self.generation {
            *g += 1;
        }
        Ok(())
    }
}
