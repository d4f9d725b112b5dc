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

// The reachability map: wheel and buttons zoom, dragging pans (the picture's viewBox moves);
// focusing or hovering a class brings its arrows forward.
document.addEventListener("DOMContentLoaded", () => {
  const svg = document.getElementById("map");
  if (!svg) return;
  const initial = svg.viewBox.baseVal;
  const home = [initial.x, initial.y, initial.width, initial.height];
  let [x, y, w, h] = home;
  const apply = () => svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
  const zoom = (factor, cx = x + w / 2, cy = y + h / 2) => {
    const nw = Math.min(Math.max(w * factor, home[2] / 50), home[2] * 4);
    const nh = nw * (h / w);
    x = cx - (cx - x) * (nw / w);
    y = cy - (cy - y) * (nh / h);
    w = nw; h = nh;
    apply();
  };
  const toMap = (event) => {
    const r = svg.getBoundingClientRect();
    return [x + (event.clientX - r.left) / r.width * w, y + (event.clientY - r.top) / r.height * h];
  };
  document.getElementById("zoom-in")?.addEventListener("click", () => zoom(0.7));
  document.getElementById("zoom-out")?.addEventListener("click", () => zoom(1 / 0.7));
  document.getElementById("zoom-reset")?.addEventListener("click", () => { [x, y, w, h] = home; apply(); });
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoom(event.deltaY < 0 ? 0.85 : 1 / 0.85, ...toMap(event));
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (event) => { drag = [event.clientX, event.clientY]; });
  window.addEventListener("pointerup", () => { drag = null; });
  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    x -= (event.clientX - drag[0]) / r.width * w;
    y -= (event.clientY - drag[1]) / r.height * h;
    drag = [event.clientX, event.clientY];
    apply();
  });
  const edges = [...svg.querySelectorAll(".edge")];
  const light = (id) => edges.forEach((e) => {
    e.classList.toggle("lit", id !== null && (e.dataset.from === id || e.dataset.to === id));
    e.classList.toggle("dim", id !== null && e.dataset.from !== id && e.dataset.to !== id);
  });
  svg.querySelectorAll(".node").forEach((node) => {
    for (const on of ["focus", "mouseenter"]) node.addEventListener(on, () => light(node.dataset.class));
    for (const off of ["blur", "mouseleave"]) node.addEventListener(off, () => light(null));
  });
});
