//! Real packets: the probes the lab and its tests send from inside an instance namespace.
//!
//! A probe passes when the destination's kernel answered: a TCP connection accepted or
//! refused (RST), a UDP datagram answered or refused (ICMP port unreachable, which endpoint
//! namespaces do not rate-limit), an ICMP echo replied. Security groups drop silently, so a
//! blocked probe is one that times out. No listener is needed at the destination.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// The protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProtocol {
    /// A TCP connection attempt.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// An ICMP echo request.
    Icmp,
}

/// One probe: `tcp 198.18.1.3 80 0` (protocol, destination, port, source port; 0 = any),
/// optionally followed by the source address to send from (a multi-homed instance's
/// secondary interface); the destination may be an IPv6 address (`icmp` is then ICMPv6
/// echo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Protocol.
    pub protocol: ProbeProtocol,
    /// Destination address.
    pub destination: IpAddr,
    /// Destination port (TCP/UDP).
    pub port: u16,
    /// Source port (TCP/UDP; 0 lets the kernel choose).
    pub source_port: u16,
    /// Source address (`None` lets routing choose: the primary interface's).
    pub source: Option<IpAddr>,
}

impl FromStr for Probe {
    type Err = String;

    fn from_str(s: &str) -> Result<Probe, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let bad = || {
            format!(
                "bad probe {s:?}: expected PROTOCOL ADDRESS [PORT [SOURCE_PORT [SOURCE_ADDRESS]]]"
            )
        };
        let protocol = match w.first().copied() {
            Some("tcp") => ProbeProtocol::Tcp,
            Some("udp") => ProbeProtocol::Udp,
            Some("icmp") => ProbeProtocol::Icmp,
            _ => return Err(bad()),
        };
        let num = |i: usize| w.get(i).map_or(Ok(0), |p| p.parse().map_err(|_| bad()));
        Ok(Probe {
            protocol,
            destination: w.get(1).ok_or_else(bad)?.parse().map_err(|_| bad())?,
            port: num(2)?,
            source_port: num(3)?,
            source: w.get(4).map(|a| a.parse().map_err(|_| bad())).transpose()?,
        })
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.protocol {
            ProbeProtocol::Tcp => "tcp",
            ProbeProtocol::Udp => "udp",
            ProbeProtocol::Icmp => "icmp",
        };
        write!(
            f,
            "{p} {} {} {}",
            self.destination, self.port, self.source_port
        )?;
        match self.source {
            Some(a) => write!(f, " {a}"),
            None => Ok(()),
        }
    }
}

/// Sends one probe from the current namespace; true when it got through.
pub fn send(probe: &Probe, timeout: Duration) -> bool {
    let (domain, any) = match probe.destination {
        IpAddr::V4(_) => (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        IpAddr::V6(_) => (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    let source = SocketAddr::new(probe.source.unwrap_or(any), probe.source_port);
    let target = SocketAddr::new(probe.destination, probe.port);
    let answered = |e: std::io::Error| e.kind() == ErrorKind::ConnectionRefused;
    // Several probes may share a source port towards different destinations (each socket
    // is connected, so replies reach the right one): the address is reusable.
    let bound = |kind: Type, protocol: Protocol| {
        let socket = Socket::new(domain, kind, Some(protocol)).ok()?;
        let _ = socket.set_reuse_address(true);
        socket.bind(&source.into()).ok()?;
        Some(socket)
    };
    match probe.protocol {
        ProbeProtocol::Tcp => {
            let Some(socket) = bound(Type::STREAM, Protocol::TCP) else {
                return false;
            };
            socket
                .connect_timeout(&target.into(), timeout)
                .map_or_else(answered, |()| true)
        }
        ProbeProtocol::Udp => {
            let Some(socket) = bound(Type::DGRAM, Protocol::UDP) else {
                return false;
            };
            let socket: UdpSocket = socket.into();
            let _ = socket.set_read_timeout(Some(timeout));
            if socket.connect(target).is_err() || socket.send(b"stockade probe").is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            socket.recv(&mut buf).map_or_else(answered, |_| true)
        }
        ProbeProtocol::Icmp => Command::new("ping")
            .args(["-c", "1", "-n", "-q", "-W"])
            .arg(format!("{:.1}", timeout.as_secs_f64()))
            .args(probe.source.map(|a| format!("-I{a}")))
            .arg(probe.destination.to_string())
            .output()
            .is_ok_and(|o| o.status.success()),
    }
}

/// Sends many probes, up to 64 at a time; results in order.
pub fn send_all(probes: &[Probe], timeout: Duration) -> Vec<bool> {
    let mut results = Vec::with_capacity(probes.len());
    for chunk in probes.chunks(64) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|p| {
                let p = *p;
                std::thread::spawn(move || send(&p, timeout))
            })
            .collect();
        results.extend(handles.into_iter().map(|h| h.join().unwrap_or(false)));
    }
    results
}
