// Progressive enhancement only: every page works without this file.
"use strict";

// The rule form: the peer field's hint follows the peer type, and the port range follows
// protocols that have no ports (ECS wants -1/-1 there).
document.addEventListener("DOMContentLoaded", () => {
  const kind = document.getElementById("r-peerkind");
  const peer = document.getElementById("r-peer");
  if (kind && peer) {
    const hints = { cidr: "0.0.0.0/0", ipv6: "::/0", group: "sg-…", prefixlist: "pl-…" };
    const follow = () => { peer.placeholder = hints[kind.value] || ""; };
    kind.addEventListener("change", follow);
    follow();
  }
  const protocol = document.getElementById("r-protocol");
  const ports = document.getElementById("r-ports");
  if (protocol && ports) {
    const follow = () => {
      const portless = ["ICMP", "ICMPv6", "GRE", "ALL"].includes(protocol.value);
      if (portless && ports.value === "") ports.value = "-1/-1";
      ports.placeholder = portless ? "-1/-1" : "80/80";
    };
    protocol.addEventListener("change", follow);
    follow();
  }
});
