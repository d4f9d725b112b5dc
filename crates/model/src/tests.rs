//! Wire-form parsing: every accepted form and every rejection with its ECS code.

use proptest::prelude::*;

use super::*;

fn rid() -> SecurityGroupRuleId {
    "sgr-test1".parse().unwrap()
}

fn fields(proto: &str, ports: &str, source: &str) -> PermissionFields {
    PermissionFields {
        ip_protocol: Some(proto.into()),
        port_range: Some(ports.into()),
        source_cidr_ip: Some(source.into()),
        ..Default::default()
    }
}

fn parse(f: &PermissionFields) -> Result<Permission, ModelError> {
    f.parse(rid(), Direction::Ingress, NetworkType::Vpc)
}

fn code(f: &PermissionFields) -> String {
    parse(f).unwrap_err().code().into_owned()
}

#[test]
fn port_range_forms() {
    assert_eq!(
        "1/200".parse::<PortRange>().unwrap(),
        PortRange::new(1, 200).unwrap()
    );
    assert_eq!("22/22".parse::<PortRange>().unwrap().to_string(), "22/22");
    assert_eq!(
        "200/1".parse::<PortRange>().unwrap_err().code(),
        "InvalidParam.PortRange"
    );
    assert_eq!(
        "0/10".parse::<PortRange>().unwrap_err().code(),
        "InvalidParam.PortRange"
    );
    assert_eq!(
        "1/65536".parse::<PortRange>().unwrap_err().code(),
        "InvalidParam.PortRange"
    );
    assert_eq!(
        "22".parse::<PortRange>().unwrap_err().code(),
        "InvalidPortRange.Malformed"
    );
    assert_eq!(
        "a/b".parse::<PortRange>().unwrap_err().code(),
        "InvalidPortRange.Malformed"
    );
}

#[test]
fn protocol_is_case_insensitive_and_closed() {
    for (s, p) in [
        ("tcp", IpProtocol::Tcp),
        ("TCP", IpProtocol::Tcp),
        ("All", IpProtocol::All),
    ] {
        assert_eq!(s.parse::<IpProtocol>().unwrap(), p);
    }
    assert_eq!("icmpV6".parse::<IpProtocol>().unwrap().as_wire(), "ICMPv6");
    assert_eq!(
        "sctp".parse::<IpProtocol>().unwrap_err().code(),
        "InvalidIpProtocol.ValueNotSupported"
    );
}

#[test]
fn priority_bounds() {
    assert_eq!("1".parse::<Priority>().unwrap().get(), 1);
    assert_eq!("100".parse::<Priority>().unwrap().get(), 100);
    assert_eq!(
        "0".parse::<Priority>().unwrap_err().code(),
        "InvalidPriority.ValueNotSupported"
    );
    assert_eq!(
        "101".parse::<Priority>().unwrap_err().code(),
        "InvalidPriority.ValueNotSupported"
    );
    assert_eq!(
        "x".parse::<Priority>().unwrap_err().code(),
        "InvalidPriority.Malformed"
    );
    assert_eq!("Drop".parse::<Policy>().unwrap(), Policy::Drop);
    assert_eq!(
        "deny".parse::<Policy>().unwrap_err().code(),
        "InvalidPolicy.Malformed"
    );
    assert_eq!("Internet".parse::<NicType>().unwrap(), NicType::Internet);
    assert_eq!(
        "wan".parse::<NicType>().unwrap_err().code(),
        "InvalidNicType.ValueNotSupported"
    );
}

#[test]
fn tcp_needs_real_ports_and_icmp_none() {
    let p = parse(&fields("tcp", "22/22", "10.0.0.0/8")).unwrap();
    assert_eq!(
        p.protocol,
        Protocol::Tcp(Ports::to(PortRange::single(22).unwrap()))
    );
    assert_eq!(p.policy, Policy::Accept);
    assert_eq!(p.priority, Priority::HIGHEST);
    assert_eq!(
        code(&fields("tcp", "-1/-1", "10.0.0.0/8")),
        "InvalidParam.ProtocolAndPortRangeMismatch"
    );
    let mut no_ports = fields("udp", "", "10.0.0.0/8");
    no_ports.port_range = None;
    assert_eq!(code(&no_ports), "InvalidPortRange.Malformed");
    assert_eq!(
        parse(&fields("icmp", "-1/-1", "0.0.0.0/0"))
            .unwrap()
            .protocol,
        Protocol::Icmp
    );
    assert_eq!(
        code(&fields("icmp", "22/22", "0.0.0.0/0")),
        "InvalidParam.ProtocolAndPortRangeMismatch"
    );
    assert_eq!(
        parse(&fields("all", "-1/-1", "0.0.0.0/0"))
            .unwrap()
            .protocol,
        Protocol::All
    );
    let mut with_source = fields("tcp", "80/80", "1.2.3.4");
    with_source.source_port_range = Some("1024/65535".into());
    let p = parse(&with_source).unwrap();
    assert_eq!(
        p.protocol.ports().unwrap().source,
        PortRange::new(1024, 65535)
    );
    assert_eq!(p.peer, Peer::Cidr("1.2.3.4/32".parse().unwrap()));
    with_source.source_port_range = Some("9/1".into());
    assert_eq!(code(&with_source), "InvalidSourcePortRange.Malformed");
}

#[test]
fn peers_and_address_families() {
    assert_eq!(
        code(&fields("tcp", "1/2", "10.0.0.0/33")),
        "InvalidSourceCidrIp.Malformed"
    );
    assert_eq!(
        code(&fields("tcp", "1/2", "::/0")),
        "InvalidSourceCidrIp.Malformed"
    );
    let p = parse(&fields("tcp", "1/2", "10.1.2.3/8")).unwrap();
    assert_eq!(
        p.peer,
        Peer::Cidr("10.0.0.0/8".parse().unwrap()),
        "normalised to the network"
    );

    let mut both = fields("tcp", "1/2", "10.0.0.0/8");
    both.ipv6_source_cidr_ip = Some("2001:db8::/32".into());
    assert_eq!(code(&both), "InvalidParameter.Conflict");

    let mut v6 = fields("icmp", "-1/-1", "");
    v6.ipv6_source_cidr_ip = Some("2001:db8::/32".into());
    assert_eq!(
        code(&v6),
        "InvalidParam.Ipv4ProtocolConflictWithIpv6Address"
    );
    v6.ip_protocol = Some("icmpv6".into());
    assert!(parse(&v6).is_ok());
    assert_eq!(
        code(&fields("icmpv6", "-1/-1", "1.2.3.4")),
        "InvalidParam.Ipv6ProtocolConflictWithIpv4Address"
    );

    let mut mixed = fields("tcp", "1/2", "10.0.0.0/8");
    mixed.ipv6_dest_cidr_ip = Some("2001:db8::1".into());
    assert_eq!(code(&mixed), "InvalidParameter.Conflict");

    let none = fields("tcp", "1/2", "");
    assert_eq!(code(&none), "MissingParameter.Source");
    let egress = none
        .parse(rid(), Direction::Egress, NetworkType::Vpc)
        .unwrap_err();
    assert_eq!(egress.code(), "MissingParameter.Dest");
}

#[test]
fn egress_swaps_peer_and_local() {
    let mut f = fields("tcp", "443/443", "192.168.0.0/24");
    f.dest_cidr_ip = Some("0.0.0.0/0".into());
    let p = f.parse(rid(), Direction::Egress, NetworkType::Vpc).unwrap();
    assert_eq!(p.peer, Peer::Cidr("0.0.0.0/0".parse().unwrap()));
    assert_eq!(p.local, Some("192.168.0.0/24".parse().unwrap()));
}

#[test]
fn one_authorization_object_per_rule() {
    let mut f = fields("tcp", "1/2", "10.0.0.0/8");
    f.group_id = Some("sg-other".into());
    assert_eq!(
        parse(&f).unwrap_err(),
        ModelError::Conflict("SourceCidrIp", "SourceGroupId"),
        "a CIDR and a group: neither is dropped silently"
    );
    f.source_cidr_ip = None;
    assert!(matches!(parse(&f).unwrap().peer, Peer::Group(_)));
    f.prefix_list_id = Some("pl-x".into());
    assert_eq!(code(&f), "InvalidParameter.Conflict");
    f.group_id = None;
    assert!(matches!(parse(&f).unwrap().peer, Peer::PrefixList(_)));
    f.prefix_list_id = Some("sg-wrong".into());
    assert_eq!(code(&f), "InvalidPrefixListId.Malformed");
}

#[test]
fn wire_values_are_read_strictly() {
    for ports in [" 80/80", "+80/+80", "08/08", "80 /80", "80/80 "] {
        assert_eq!(
            code(&fields("tcp", ports, "10.0.0.0/8")),
            "InvalidPortRange.Malformed",
            "{ports:?}"
        );
    }
    for cidr in [
        "010.0.0.1/32",
        "10.0.0.1/032",
        " 10.0.0.0/8",
        "10.0.0.0/+8",
        "10.0.0.0/33",
    ] {
        assert_eq!(
            code(&fields("tcp", "80/80", cidr)),
            "InvalidSourceCidrIp.Malformed",
            "{cidr:?}"
        );
    }
    assert_eq!(
        code(&fields("tcp ", "80/80", "10.0.0.0/8")),
        "InvalidIpProtocol.ValueNotSupported"
    );
    let mut f = fields("tcp", "80/80", "10.0.0.0/8");
    for priority in [" 1", "+1", "01"] {
        f.priority = Some(priority.into());
        assert_eq!(code(&f), "InvalidPriority.Malformed", "{priority:?}");
    }
    f.priority = Some("100".into());
    assert!(parse(&f).is_ok());
    assert_eq!(
        parse(&fields("tcp", "80/80", "10.1.2.3/8")).unwrap().peer,
        Peer::Cidr("10.0.0.0/8".parse().unwrap()),
        "a host address with a prefix is the prefix's network"
    );
}

#[test]
fn nic_type_by_network() {
    let mut f = fields("tcp", "80/80", "0.0.0.0/0");
    f.nic_type = Some("internet".into());
    assert_eq!(
        code(&f),
        "InvalidNicType.Mismatch",
        "VPC rules are intranet only"
    );
    f.nic_type = Some("intranet".into());
    assert_eq!(parse(&f).unwrap().nic_type, NicType::Intranet);
    f.nic_type = Some("internet".into());
    let classic = |f: &PermissionFields| f.parse(rid(), Direction::Ingress, NetworkType::Classic);
    assert_eq!(classic(&f).unwrap().nic_type, NicType::Internet);
    f.nic_type = None;
    assert_eq!(
        classic(&f).unwrap().nic_type,
        NicType::Internet,
        "classic defaults to internet"
    );
    f.source_cidr_ip = None;
    f.group_id = Some("sg-web".into());
    assert_eq!(
        classic(&f).unwrap().nic_type,
        NicType::Intranet,
        "group references are intranet"
    );
    f.nic_type = Some("internet".into());
    assert_eq!(classic(&f).unwrap_err().code(), "InvalidNicType.Mismatch");
}

#[test]
fn descriptions_and_names() {
    let mut f = fields("tcp", "80/80", "0.0.0.0/0");
    f.description = Some("x".repeat(513));
    assert_eq!(code(&f), "InvalidSecurityGroupDiscription.Malformed");
    f.description = Some("https://evil".into());
    assert_eq!(code(&f), "InvalidSecurityGroupDiscription.Malformed");
    assert!(validate_group_name("web-tier.1").is_ok());
    assert!(validate_group_name("数据库").is_ok());
    for bad in ["a", "1web", "http://x", "web tier"] {
        assert_eq!(
            validate_group_name(bad).unwrap_err().code(),
            "InvalidSecurityGroupName.Malformed",
            "{bad}"
        );
    }
}

#[test]
fn same_rule_ignores_id_and_description() {
    let a = parse(&fields("tcp", "80/80", "0.0.0.0/0")).unwrap();
    let mut b = a.clone();
    b.id = "sgr-other".parse().unwrap();
    b.description = "web".into();
    assert!(a.same_rule(&b));
    b.priority = Priority::new(2).unwrap();
    assert!(!a.same_rule(&b));
}

proptest! {
    /// Every pair of ports either parses to a range that prints back the same, or fails with
    /// a documented code: the parser never accepts an illegal range.
    #[test]
    fn port_ranges_round_trip(a in -2i32..70000, b in -2i32..70000) {
        let s = format!("{a}/{b}");
        match s.parse::<PortRange>() {
            Ok(r) => {
                prop_assert!(1 <= a && a <= b && b <= 65535);
                prop_assert_eq!(r.to_string(), s);
            }
            Err(e) => prop_assert!(matches!(
                e.code().as_ref(),
                "InvalidParam.PortRange" | "InvalidParam.ProtocolAndPortRangeMismatch"
            )),
        }
    }
}

#[test]
fn to_fields_round_trips() {
    let mut f = fields("tcp", "443/443", "10.0.0.0/8");
    f.source_port_range = Some("1024/65535".into());
    f.dest_cidr_ip = Some("192.168.1.0/24".into());
    f.description = Some("web".into());
    for (direction, network) in [
        (Direction::Ingress, NetworkType::Vpc),
        (Direction::Egress, NetworkType::Vpc),
        (Direction::Ingress, NetworkType::Classic),
    ] {
        let p = f.parse(rid(), direction, network).unwrap();
        assert_eq!(p.to_fields().parse(rid(), direction, network).unwrap(), p);
    }
    let mut g = fields("udp", "53/53", "");
    g.group_id = Some("sg-peer".into());
    g.group_owner_id = Some("1234".into());
    let p = parse(&g).unwrap();
    assert_eq!(
        p.to_fields()
            .parse(rid(), Direction::Ingress, NetworkType::Vpc)
            .unwrap(),
        p
    );
}

#[test]
fn protocol_numbers_round_trip_through_names() {
    for p in [
        IpProtocol::Tcp,
        IpProtocol::Udp,
        IpProtocol::Icmp,
        IpProtocol::Icmpv6,
        IpProtocol::Gre,
    ] {
        assert_eq!(IpProtocol::from_number(p.number().unwrap()), Some(p));
        assert_eq!(
            packet_protocol(&p.as_wire().to_lowercase()),
            p.number().ok_or(ModelError::Missing("x"))
        );
    }
    assert_eq!(IpProtocol::from_number(50), None);
    assert_eq!(packet_protocol("50"), Ok(50));
    let all = packet_protocol("ALL").unwrap_err();
    assert_eq!(all.code(), "InvalidIpProtocol.ValueNotSupported");
    assert!(
        all.to_string().contains("IANA"),
        "the message offers what is accepted: {all}"
    );
    assert!(packet_protocol("sctp").is_err() && packet_protocol("256").is_err());
}

#[test]
fn flow_ports_need_a_destination_port_only_with_ports() {
    let tcp = FlowPorts::parse("tcp", Some(22), None).unwrap();
    assert_eq!(
        (tcp.protocol, tcp.destination_port, tcp.source_port),
        (6, 22, 49152)
    );
    assert_eq!(
        FlowPorts::parse("UDP", None, None).unwrap_err(),
        ModelError::Missing("DestinationPort")
    );
    let icmp = FlowPorts::parse("icmp", Some(22), Some(7)).unwrap();
    assert_eq!(
        (icmp.protocol, icmp.destination_port, icmp.source_port),
        (1, 0, 0)
    );
}

#[test]
fn probe_classes_render_their_ports() {
    let span = PortSpan { start: 22, end: 80 };
    assert_eq!(ProbeProtocol::Tcp.port_range_wire(span), "22/80");
    assert_eq!(ProbeProtocol::Gre.port_range_wire(PortSpan::NONE), "-1/-1");
    assert_eq!(ProbeProtocol::Other.as_wire(), "OTHER");
    assert!(ProbeProtocol::ALL
        .iter()
        .filter(|p| **p != ProbeProtocol::Other)
        .all(|p| IpProtocol::from_number(p.number()) == p.ip_protocol()));
    assert_eq!(IpProtocol::from_number(ProbeProtocol::Other.number()), None);
}

#[test]
fn a_port_list_stands_for_the_port_range() {
    let mut f = fields("tcp", "", "10.0.0.0/8");
    f.port_range_list_id = Some("prl-web".into());
    let p = parse(&f).unwrap();
    assert_eq!(p.port_list, Some("prl-web".parse().unwrap()));
    // What responses show reads back as the same rule.
    let again = p.to_fields();
    assert_eq!(again.port_range.as_deref(), Some("-1/-1"));
    assert!(parse(&again).unwrap().same_rule(&p));
    // A list is not the same rule as the range its placeholder spans.
    let mut all = fields("tcp", "1/65535", "10.0.0.0/8");
    assert!(!parse(&all).unwrap().same_rule(&p));
    all.port_range_list_id = Some("prl-web".into());
    assert_eq!(
        parse(&all).unwrap_err(),
        ModelError::Conflict("PortRange", "PortRangeListId"),
        "a range beside a list: neither is dropped silently"
    );
    let mut icmp = fields("icmp", "-1/-1", "10.0.0.0/8");
    icmp.port_range_list_id = Some("prl-web".into());
    assert_eq!(code(&icmp), "InvalidParam.ProtocolAndPortRangeMismatch");
    f.port_range_list_id = Some("pl-web".into());
    assert_eq!(code(&f), "InvalidPortRangeListId.Malformed");
}

#[test]
fn exposure_parts_are_answered_only_as_rules_could_name_them() {
    use crate::{PortSpan, ProbeProtocol};
    let span = |start, end| PortSpan { start, end };
    assert_eq!(
        ProbeProtocol::Tcp.rule_port_range(span(0, 65535)),
        Some("1/65535".to_string())
    );
    assert_eq!(ProbeProtocol::Udp.rule_port_range(span(0, 0)), None);
    assert_eq!(
        ProbeProtocol::Tcp.rule_port_range(span(22, 22)),
        Some("22/22".to_string())
    );
    assert_eq!(
        ProbeProtocol::Icmp.rule_port_range(PortSpan::NONE),
        Some("-1/-1".to_string())
    );
    assert_eq!(ProbeProtocol::Other.rule_port_range(PortSpan::NONE), None);
}

#[test]
fn an_ipv4_prefix_is_an_aligned_28_block() {
    let p: Ipv4Prefix = "10.0.1.32/28".parse().unwrap();
    assert_eq!(p.to_string(), "10.0.1.32/28");
    let all: Vec<std::net::Ipv4Addr> = p.addresses().collect();
    assert_eq!(all.len(), 16);
    assert_eq!(
        (all[0].to_string(), all[15].to_string()),
        ("10.0.1.32".to_string(), "10.0.1.47".to_string()),
        "the first and the last address are the interface's too"
    );
    for bad in [
        "10.0.1.33/28",
        "10.0.1.32/27",
        "10.0.1.32",
        "10.0.1/28",
        "fd00::/28",
        "10.0.1.32/028",
    ] {
        assert_eq!(
            bad.parse::<Ipv4Prefix>().unwrap_err().code(),
            "InvalidIpv4Prefix.Malformed",
            "{bad}"
        );
    }
}

proptest! {
    #[test]
    fn every_address_is_in_exactly_its_own_block(a in any::<u32>()) {
        let address = std::net::Ipv4Addr::from(a);
        let p = Ipv4Prefix::of(address);
        prop_assert!(p.contains(address));
        prop_assert!(p.addresses().any(|x| x == address));
        prop_assert_eq!(p.to_string().parse::<Ipv4Prefix>().unwrap(), p);
        let next = std::net::Ipv4Addr::from(u32::from(p.network()).wrapping_add(16));
        prop_assert!(!p.contains(next));
    }
}
