# Forges the packets a hostile instance sends (the lab's host-isolation tests): raw frames on
# one of its devices through a packet socket, so nothing of the instance's own stack (routes,
# source checks, neighbour cache) stands between the test and the wire.
#
#   forge.py DEV DSTMAC COMMAND ARGS...
#
# DSTMAC is the next hop's link-layer address (the host side of DEV). Prints the number of
# frames sent.
import ipaddress
import socket
import struct
import sys


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def addr(a):
    return ipaddress.ip_address(a)


def ip4(src, dst, proto, payload, ident=0, offset=0, more=0, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident,
                    (more << 13) | offset, ttl, proto, 0, addr(src).packed, addr(dst).packed)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return 0x0800, h + payload


def ip6(src, dst, nh, payload, hlim=64):
    h = struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, hlim,
                    addr(src).packed, addr(dst).packed)
    return 0x86DD, h + payload


def ip(src, dst, proto, payload, hlim=64):
    if addr(src).version == 4:
        return ip4(src, dst, proto, payload, ttl=hlim)
    return ip6(src, dst, proto, payload, hlim)


def pseudo(src, dst, proto, length):
    s, d = addr(src), addr(dst)
    if s.version == 4:
        return s.packed + d.packed + struct.pack("!BBH", 0, proto, length)
    return s.packed + d.packed + struct.pack("!IxxxB", length, proto)


def udp(src, dst, sport, dport, data):
    h = struct.pack("!HHHH", sport, dport, 8 + len(data), 0)
    c = csum(pseudo(src, dst, 17, 8 + len(data)) + h + data) or 0xFFFF
    return h[:6] + struct.pack("!H", c) + data


def icmp6(src, dst, body):
    c = csum(pseudo(src, dst, 58, len(body)) + body)
    return body[:2] + struct.pack("!H", c) + body[4:]


def icmp4(body):
    return body[:2] + struct.pack("!H", csum(body)) + body[4:]


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


def own_mac(dev):
    with open("/sys/class/net/%s/address" % dev) as f:
        return mac(f.read().strip())


def arp_body(op, sender_mac, sender_ip, target_ip):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac,
                       addr(sender_ip).packed, b"\0" * 6, addr(target_ip).packed)


def frames(dev, cmd, a):
    if cmd == "frag":
        # frag SRC DST IDENT SPORT DPORT HEAD TAIL PART: one UDP datagram carrying HEAD+TAIL
        # (its checksum over both), cut after HEAD (a multiple of 8 bytes); PART is head,
        # tail or both.
        src, dst, ident, sport, dport, head, tail, part = a
        ident, head, tail = int(ident), head.encode(), tail.encode()
        d = udp(src, dst, int(sport), int(dport), head + tail)
        cut = 8 + len(head)
        pieces = {"head": (d[:cut], 0, 1), "tail": (d[cut:], cut // 8, 0)}
        out = []
        for name in (["head", "tail"] if part == "both" else [part]):
            data, offset, more = pieces[name]
            if addr(src).version == 4:
                out.append(ip4(src, dst, 17, data, ident, offset, more))
            else:
                frag = struct.pack("!BBHI", 17, 0, (offset << 3) | more, ident)
                out.append(ip6(src, dst, 44, frag + data))
        return out
    if cmd == "udp":
        src, dst, sport, dport, data = a
        return [ip(src, dst, 17, udp(src, dst, int(sport), int(dport), data.encode()))]
    if cmd == "syn":
        src, dst, dport = a
        h = struct.pack("!HHIIBBHHH", 40000, int(dport), 1, 0, 5 << 4, 0x02, 65535, 0, 0)
        c = csum(pseudo(src, dst, 6, len(h)) + h)
        return [ip(src, dst, 6, h[:16] + struct.pack("!H", c) + h[18:])]
    if cmd == "ping":
        src, dst = a
        if addr(src).version == 4:
            return [ip4(src, dst, 1, icmp4(struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"x" * 8))]
        body = struct.pack("!BBHHH", 128, 0, 0, 7, 1) + b"x" * 8
        return [ip6(src, dst, 58, icmp6(src, dst, body))]
    if cmd == "arp":
        # arp OP SENDER_IP TARGET_IP: a broadcast request (1) or reply (2) from this device.
        op, sender, target = a
        return [(0x0806, arp_body(int(op), own_mac(dev), sender, target))]
    if cmd == "ns":
        # ns SRC TARGET: a neighbour solicitation from SRC with this device's address.
        src, target = a
        body = struct.pack("!BBHI16s", 135, 0, 0, 0, addr(target).packed)
        body += struct.pack("!BB6s", 1, 1, own_mac(dev))
        return [ip6(src, target, 58, icmp6(src, target, body), 255)]
    if cmd == "na":
        # na SRC DST TARGET: an unsolicited advertisement (override) of TARGET at this device.
        src, dst, target = a
        body = struct.pack("!BBHI16s", 136, 0, 0, 0x20000000, addr(target).packed)
        body += struct.pack("!BB6s", 2, 1, own_mac(dev))
        return [ip6(src, dst, 58, icmp6(src, dst, body), 255)]
    if cmd == "ra":
        # ra SRC: a router advertisement to all nodes with a prefix and a default route.
        src = a[0]
        dst = "ff02::1"
        body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
        body += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0,
                            addr("2001:db8:66::").packed)
        body += struct.pack("!BB6s", 1, 1, own_mac(dev))
        return [ip6(src, dst, 58, icmp6(src, dst, body), 255)]
    if cmd == "redirect6":
        # redirect6 SRC DST TARGET DESTINATION
        src, dst, target, destination = a
        body = struct.pack("!BBHI16s16s", 137, 0, 0, 0, addr(target).packed,
                           addr(destination).packed)
        return [ip6(src, dst, 58, icmp6(src, dst, body), 255)]
    if cmd == "redirect4":
        # redirect4 SRC DST GATEWAY DESTINATION
        src, dst, gateway, destination = a
        _, inner = ip4(dst, destination, 17, udp(dst, destination, 1, 2, b""))
        body = struct.pack("!BBH4s", 5, 1, 0, addr(gateway).packed) + inner[:28]
        return [ip4(src, dst, 1, icmp4(body))]
    if cmd == "vxlan":
        # vxlan SRC DST VNI KIND ...: a VXLAN datagram to DST:4789 carrying, for KIND arp
        # (CLAIM_IP FAKE_MAC), a broadcast ARP reply putting CLAIM_IP at FAKE_MAC; for KIND
        # udp (INNER_DSTMAC INNER_SRC INNER_DST DPORT DATA), an IPv4 UDP datagram.
        src, dst, vni, kind = a[:4]
        if kind == "arp":
            claim, fake = a[4:]
            inner = mac("ff:ff:ff:ff:ff:ff") + mac(fake) + b"\x08\x06"
            inner += arp_body(2, mac(fake), claim, claim)
        else:
            inner_dstmac, isrc, idst, dport, data = a[4:]
            _, packet = ip4(isrc, idst, 17, udp(isrc, idst, 40000, int(dport), data.encode()))
            inner = mac(inner_dstmac) + mac("02:00:00:00:66:66") + b"\x08\x00" + packet
        header = struct.pack("!II", 0x08000000, int(vni) << 8)
        return [ip(src, dst, 17, udp(src, dst, 40000, 4789, header + inner))]
    if cmd == "ipip":
        # ipip SRC DST INNER_SRC INNER_DST DPORT DATA: IPv4 in IPv4 (4) and in GRE (47).
        src, dst, isrc, idst, dport, data = a
        _, inner = ip4(isrc, idst, 17, udp(isrc, idst, 40000, int(dport), data.encode()))
        return [ip4(src, dst, 4, inner), ip4(src, dst, 47, struct.pack("!HH", 0, 0x0800) + inner)]
    raise SystemExit("unknown command " + cmd)


def main():
    dev, dstmac, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    sent = 0
    for ethertype, payload in frames(dev, cmd, args):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype))
        dst = mac("ff:ff:ff:ff:ff:ff") if ethertype == 0x0806 else mac(dstmac)
        s.sendto(payload, (dev, ethertype, 0, 0, dst))
        s.close()
        sent += 1
    print(sent)


main()
