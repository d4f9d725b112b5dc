//! Network namespaces and veth pairs: the lab's hosts and instances on one machine.
//!
//! Layout (all addresses in the benchmarking range 198.18.0.0/15, never routed outside):
//! - a **host** is a namespace that forwards between its instances; it owns the gateway
//!   address [`GATEWAY`] on its loopback, which answers its instances' ARP;
//! - an **instance** is a namespace with `eth0` (intranet: its private address /32) and, for
//!   a classic instance with a public address, `eth1` (internet), each one end of a veth
//!   pair whose other end sits in its host, labelled with the network interface it carries
//!   (the label the agent finds it by), with a host route to the address;
//! - hosts are joined by veth links to the first host, which also holds the **internet**: a
//!   namespace with the address [`INTERNET`], outside every security group.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{run_command, AgentError};

/// The gateway every instance routes through (on each host's loopback).
pub const GATEWAY: &str = "198.18.255.254";
/// The IPv6 gateway, link-local on the host side of every device (and the hub's side of
/// every link between hosts); [`PEER_LINK_LOCAL`] is the other host's side of a link.
pub const GATEWAY6: &str = "fe80::1";
/// The link-local address of the non-hub side of a link between hosts.
pub const PEER_LINK_LOCAL: &str = "fe80::2";
/// The address of the lab's internet client namespace.
pub const INTERNET: &str = "198.19.255.1";

/// Runs `ip ARGS` (use `-n NS` to act in a namespace).
pub fn ip(args: &[&str]) -> Result<String, AgentError> {
    run_command("ip", args)
}

/// Runs a program inside a namespace. `nsenter --net` only switches the network namespace;
/// `ip netns exec` also remounts `/sys`, which costs a few milliseconds the agent pays on
/// every transaction.
pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<String, AgentError> {
    let net = format!("--net=/run/netns/{ns}");
    let mut all = vec![net.as_str(), program];
    all.extend_from_slice(args);
    run_command("nsenter", &all)
}

/// Whether a namespace exists.
pub fn exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// Creates a namespace with loopback up and the given sysctls.
pub fn create(ns: &str, sysctls: &[&str]) -> Result<(), AgentError> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    for s in sysctls {
        exec(ns, "sysctl", &["-qw", s])?;
    }
    Ok(())
}

/// Deletes a namespace (its veth ends go with it); a missing one is not an error.
pub fn delete(ns: &str) -> Result<(), AgentError> {
    if exists(ns) {
        ip(&["netns", "del", ns])?;
    }
    Ok(())
}

/// A host namespace: forwarding on, reverse-path filtering off (instances' addresses are
/// /32s routed per device), the gateway address on loopback.
pub fn create_host(ns: &str) -> Result<(), AgentError> {
    create(
        ns,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{GATEWAY}/32"),
        "dev",
        "lo",
    ])?;
    Ok(())
}

/// An endpoint namespace (instance or internet client). ICMP errors are not rate-limited,
/// so a probe to a closed UDP port always learns that its packet arrived.
pub fn create_endpoint(ns: &str) -> Result<(), AgentError> {
    create(
        ns,
        &[
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv4.icmp_msgs_per_sec=100000",
            "net.ipv4.conf.all.rp_filter=0",
        ],
    )
}

/// Plugs an address of an endpoint namespace into a host: a veth pair `host_if` (host side)
/// / `inner_if` (endpoint side), the host side labelled `label` (the network interface it
/// carries, see `interfaces`; empty for the host's own uplinks), `addr`/32 inside, a host
/// route to it, and inside a route to `via` through the gateway (`default` for the primary
/// interface). With `table`, the host route goes into that routing table (a VPC's, see
/// [`vpc_table`]) and packets from the device are routed by it. With `ipv6`, the endpoint
/// also has that address (/128, routed the same way, the host's side answering as
/// [`GATEWAY6`]).
#[allow(clippy::too_many_arguments)] // One plug is one call; a struct would only rename them.
pub fn plug(
    host: &str,
    endpoint: &str,
    (host_if, inner_if): (&str, &str),
    label: &str,
    addr: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    via: &str,
    table: Option<u32>,
) -> Result<(), AgentError> {
    let a = addr.to_string();
    ip(&[
        "link", "add", host_if, "netns", host, "type", "veth", "peer", "name", inner_if, "netns",
        endpoint,
    ])?;
    ip(&[
        "-n",
        endpoint,
        "addr",
        "add",
        &format!("{a}/32"),
        "dev",
        inner_if,
    ])?;
    ip(&["-n", endpoint, "link", "set", inner_if, "up"])?;
    if !label.is_empty() {
        ip(&["-n", host, "link", "set", host_if, "alias", label])?;
    }
    ip(&["-n", host, "link", "set", host_if, "up"])?;
    let table_args: Vec<String> = table
        .map(|t| vec!["table".to_string(), t.to_string()])
        .unwrap_or_default();
    let table_args: Vec<&str> = table_args.iter().map(String::as_str).collect();
    let mut route = vec!["-n", host, "route", "add", &a, "dev", host_if];
    route.extend(&table_args);
    ip(&route)?;
    if let Some(v6) = ipv6 {
        let v6 = v6.to_string();
        ip(&[
            "-n",
            host,
            "addr",
            "add",
            &format!("{GATEWAY6}/64"),
            "dev",
            host_if,
            "nodad",
        ])?;
        ip(&[
            "-n",
            endpoint,
            "addr",
            "add",
            &format!("{v6}/128"),
            "dev",
            inner_if,
            "nodad",
        ])?;
        let mut route = vec!["-n", host, "-6", "route", "add", &v6, "dev", host_if];
        route.extend(&table_args);
        ip(&route)?;
        if via == "default" {
            ip(&[
                "-n", endpoint, "-6", "route", "add", "default", "via", GATEWAY6, "dev", inner_if,
            ])?;
        }
    }
    if let Some(t) = table {
        for family in ["-4", "-6"] {
            ip(&[
                "-n",
                host,
                family,
                "rule",
                "add",
                "iif",
                host_if,
                "table",
                &t.to_string(),
            ])?;
        }
    }
    ip(&[
        "-n", endpoint, "route", "add", via, "via", GATEWAY, "dev", inner_if, "onlink", "src", &a,
    ])?;
    // Whatever the destination, packets sent from this address leave by this device (source
    // routing): the host side lets only the device's own addresses out (anti-spoofing), so
    // a reply must not take the other interface of a multi-homed instance.
    let table = if via == "default" { "100" } else { "101" };
    ip(&["-n", endpoint, "rule", "add", "from", &a, "table", table])?;
    ip(&[
        "-n", endpoint, "route", "add", "default", "via", GATEWAY, "dev", inner_if, "onlink",
        "src", &a, "table", table,
    ])?;
    Ok(())
}

/// Joins host `other` to the first host `hub` with a /30 link (`n` numbers the link), and
/// routes the whole lab range from `other` through `hub`. Returns the hub-side address, via
/// which `hub` must route `other`'s instances.
pub fn link_hosts(
    hub: &str,
    other: &str,
    n: u8,
    names: (&str, &str),
) -> Result<String, AgentError> {
    let hub_addr = format!("198.18.254.{}", 4 * n + 1);
    let other_addr = format!("198.18.254.{}", 4 * n + 2);
    ip(&[
        "link", "add", names.0, "netns", hub, "type", "veth", "peer", "name", names.1, "netns",
        other,
    ])?;
    ip(&[
        "-n",
        hub,
        "addr",
        "add",
        &format!("{hub_addr}/30"),
        "dev",
        names.0,
    ])?;
    ip(&[
        "-n",
        other,
        "addr",
        "add",
        &format!("{other_addr}/30"),
        "dev",
        names.1,
    ])?;
    ip(&["-n", hub, "link", "set", names.0, "up"])?;
    ip(&["-n", other, "link", "set", names.1, "up"])?;
    ip(&[
        "-n",
        other,
        "route",
        "add",
        "198.18.0.0/15",
        "via",
        &hub_addr,
    ])?;
    link_local_pair(hub, other, names)?;
    ip(&[
        "-n",
        other,
        "-6",
        "route",
        "add",
        "2001:2::/48",
        "via",
        GATEWAY6,
        "dev",
        names.1,
    ])?;
    Ok(other_addr)
}

/// [`GATEWAY6`] on the hub's end of a link, [`PEER_LINK_LOCAL`] on the other's: IPv6
/// next hops between hosts without global addresses (the whole IPv6 lab range is VPCs').
fn link_local_pair(
    hub: &str,
    other: &str,
    (hub_dev, other_dev): (&str, &str),
) -> Result<(), AgentError> {
    ip(&[
        "-n",
        hub,
        "addr",
        "add",
        &format!("{GATEWAY6}/64"),
        "dev",
        hub_dev,
        "nodad",
    ])?;
    ip(&[
        "-n",
        other,
        "addr",
        "add",
        &format!("{PEER_LINK_LOCAL}/64"),
        "dev",
        other_dev,
        "nodad",
    ])?;
    Ok(())
}

/// Routes `addr` in `host` via `next_hop` on `dev` (an instance on another host, over the
/// link to it or a VPC's overlay), in `table` (a VPC's) or the main one; an IPv6 address goes
/// via [`PEER_LINK_LOCAL`] on `dev`.
pub fn route_via(
    host: &str,
    addr: std::net::IpAddr,
    (next_hop, dev): (&str, &str),
    table: Option<u32>,
) -> Result<(), AgentError> {
    let a = addr.to_string();
    let mut args = vec!["-n", host];
    match addr {
        std::net::IpAddr::V4(_) => args.extend(["route", "replace", &a, "via", next_hop]),
        std::net::IpAddr::V6(_) => {
            args.extend(["-6", "route", "replace", &a, "via", PEER_LINK_LOCAL])
        }
    }
    args.extend(["dev", dev]);
    let t = table.map(|t| t.to_string());
    if let Some(t) = &t {
        args.extend(["table", t.as_str()]);
    }
    ip(&args).map(drop)
}

/// A VPC's routing table on a host, in the way of a VRF (this kernel may have no VRF
/// driver): its instances' devices and overlay devices are routed by it alone (`ip rule
/// iif`), so overlapping VPCs on one host never reach each other. On the hub its default is
/// a blackhole; a spoke sends what it does not hold to the hub over the VPC's overlay.
pub fn vpc_table(
    host: &str,
    table: u32,
    default_via: Option<(&str, &str)>,
) -> Result<(), AgentError> {
    let t = table.to_string();
    match default_via {
        None => {
            ip(&[
                "-n",
                host,
                "route",
                "add",
                "blackhole",
                "default",
                "table",
                &t,
            ])?;
            ip(&[
                "-n",
                host,
                "-6",
                "route",
                "add",
                "blackhole",
                "default",
                "table",
                &t,
            ])
        }
        Some((dev, addr)) => {
            ip(&[
                "-n", host, "route", "add", "default", "via", addr, "dev", dev, "onlink", "table",
                &t,
            ])?;
            ip(&[
                "-n", host, "-6", "route", "add", "default", "via", GATEWAY6, "dev", dev, "table",
                &t,
            ])
        }
    }
    .map(drop)
}

/// One end of a VPC's overlay on a host: its underlay address, its peer's, and the VNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The host's namespace.
    pub host: String,
    /// This end's underlay address.
    pub local: String,
    /// The peer host's underlay address, the only source this end accepts.
    pub remote: String,
    /// The VPC's VNI.
    pub vni: u32,
}

/// A VPC's overlay between the hub and host `other` (link `n`, see [`link_hosts`]): a
/// VXLAN pair with the VPC's own VNI over the hosts' shared link, each end labelled with the
/// VPC id (the agent tracks what it brings in in the VPC's conntrack zone) and routed by the
/// VPC's table. Programmed as an overlay controller would, from placement, never from the
/// data path: learning off, the peer's underlay address the only forwarding entry (the
/// `remote`), and the peer's overlay addresses as permanent neighbours, so no frame that
/// arrives (a forged ARP reply inside a forged VXLAN packet) can move where the VPC's
/// traffic goes. What the ends accept is [`overlay_filter`]'s. Returns the hub-side and
/// the other side's overlay addresses (169.254.`t`.0/24, one /30 per link) and both ends.
pub fn overlay(
    hub: &str,
    other: &str,
    (n, t): (u8, u8),
    (hub_dev, other_dev): (&str, &str),
    vni: u32,
    (label, table): (&str, u32),
) -> Result<((String, String), [Tunnel; 2]), AgentError> {
    let underlay = |k: u8| format!("198.18.254.{}", 4 * n + k);
    let overlay = |k: u8| format!("169.254.{t}.{}", 4 * n + k);
    let (vni_text, tab) = (vni.to_string(), table.to_string());
    let ends = [
        (hub, hub_dev, underlay(1), underlay(2), overlay(1), GATEWAY6),
        (
            other,
            other_dev,
            underlay(2),
            underlay(1),
            overlay(2),
            PEER_LINK_LOCAL,
        ),
    ];
    for (ns, dev, local, remote, addr, _) in &ends {
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            dev,
            "type",
            "vxlan",
            "id",
            &vni_text,
            "local",
            local,
            "remote",
            remote,
            "dstport",
            "4789",
            "nolearning",
        ])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "alias", label])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        for family in ["-4", "-6"] {
            ip(&["-n", ns, family, "rule", "add", "iif", dev, "table", &tab])?;
        }
    }
    link_local_pair(hub, other, (hub_dev, other_dev))?;
    for (near, far) in [(&ends[0], &ends[1]), (&ends[1], &ends[0])] {
        let mac = link_address(far.0, far.1)?;
        for peer in [far.4.as_str(), far.5] {
            ip(&[
                "-n",
                near.0,
                "neigh",
                "replace",
                peer,
                "lladdr",
                &mac,
                "dev",
                near.1,
                "nud",
                "permanent",
            ])?;
        }
    }
    let tunnel = |(ns, _, local, remote, ..): &(&str, &str, String, String, String, &str)| Tunnel {
        host: ns.to_string(),
        local: local.clone(),
        remote: remote.clone(),
        vni,
    };
    Ok((
        (overlay(1), overlay(2)),
        [tunnel(&ends[0]), tunnel(&ends[1])],
    ))
}

/// A device's link-layer address.
fn link_address(ns: &str, dev: &str) -> Result<String, AgentError> {
    let text = ip(&["-n", ns, "-j", "link", "show", "dev", dev])?;
    let links: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| AgentError::Command(format!("ip -j link show {dev}: {e}")))?;
    links[0]["address"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| AgentError::Command(format!("{dev} has no link-layer address")))
}

/// The table (`inet stockade_lab`) that makes a lab host accept encapsulated packets only
/// on its own tunnels: VXLAN to one of its ends from that end's peer with that end's VNI.
/// Every other VXLAN, Geneve or VXLAN-GPE datagram, and every IP-in-IP, IPv6-in-IPv4 or
/// GRE packet, is dropped, wherever it comes from (an instance forwarded through another
/// host, say): a tunnel end accepts any outer source by itself.
pub fn overlay_filter(host: &str, tunnels: &[Tunnel]) -> Result<(), AgentError> {
    let mut script = String::from(
        "table inet stockade_lab {\n\tchain overlay {\n\
         \t\ttype filter hook input priority filter - 10; policy accept;\n",
    );
    for t in tunnels.iter().filter(|t| t.host == host) {
        script.push_str(&format!(
            "\t\tip saddr {} ip daddr {} udp dport 4789 @th,96,24 {} accept\n",
            t.remote, t.local, t.vni
        ));
    }
    script.push_str(
        "\t\tudp dport { 4789, 4790, 6081 } drop\n\
         \t\tip protocol { 4, 41, 47 } drop\n\
         \t\tip6 nexthdr { 4, 41, 47 } drop\n\t}\n}\n",
    );
    exec(host, "nft", &[&script]).map(drop)
}
