# Records what a lab host's own stack receives (the host-isolation tests): raw sockets get a
# copy of every packet delivered locally, after the input hook, so a packet the host's
# tables drop never shows here. Neighbour solicitations and advertisements are left out
# (instances need them; their effect is judged from the neighbour table). One JSON line per
# packet: family, protocol, source, input interface index, first bytes. Prints "ready" once
# listening; runs until killed.
import json
import select
import socket
import struct
import sys

IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50

socks = []
for proto in (1, 4, 6, 17, 41, 47):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    socks.append((4, proto, s))
for proto in (6, 17, 58):
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    socks.append((6, proto, s))
print("ready", flush=True)
by_fd = {s.fileno(): (family, proto, s) for family, proto, s in socks}
while True:
    ready, _, _ = select.select([s for _, _, s in socks], [], [])
    for s in ready:
        family, proto, _ = by_fd[s.fileno()]
        data, anc, _, source = s.recvmsg(65535, 256)
        ifindex = 0
        for level, kind, value in anc:
            if family == 4 and kind == IP_PKTINFO:
                ifindex = struct.unpack("i", value[:4])[0]
            if family == 6 and kind == IPV6_PKTINFO:
                ifindex = struct.unpack("i", value[16:20])[0]
        if family == 6 and proto == 58 and data and data[0] in (135, 136):
            continue
        src = source[0].split("%")[0]
        record = {"family": family, "proto": proto, "src": src, "ifindex": ifindex,
                  "data": data[:64].hex()}
        print(json.dumps(record), flush=True)
