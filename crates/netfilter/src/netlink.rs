//! Set element changes sent to the kernel as one nf_tables netlink batch, without `nft`.
//!
//! The usual change on a host is a member joining or leaving a group: one address added
//! to or deleted from a named set. Through `nft -f` that pays a process start and `nft`
//! reading the table's cache before the kernel's microseconds of work; this sends the same
//! batch (`NEWSETELEM` / `DELSETELEM` between `BATCH_BEGIN` and `BATCH_END`, one atomic
//! transaction, all or nothing) from this process. Everything else still goes through
//! `nft`, whose text is what operators read.
//!
//! The same socket also lists the namespace's tracked connections (a ctnetlink dump),
//! which the agent judges after every policy change: through `conntrack -L` that was two
//! processes started per change (one per address family, ~10 ms each), the largest part
//! of a rule change's way to the kernel.

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use rustix::net::netlink::{SocketAddrNetlink, NETFILTER};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use nft::{SetElements, TABLE};

use crate::backend::{NftError, Tracked};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_INET: u8 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 0x3;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// A netfilter netlink socket in the calling thread's network namespace.
pub(crate) fn socket() -> Result<OwnedFd, NftError> {
    rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(NETFILTER),
    )
    .map_err(|e| NftError::Spawn(format!("netfilter netlink socket: {e}")))
}

/// A netlink message being written.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
}

impl Batch {
    /// Starts a message (header and `nfgenmsg`); returns where it starts.
    fn message(&mut self, kind: u16, flags: u16, res_id: u16) -> usize {
        let start = self.buf.len();
        self.seq += 1;
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `end`
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf
            .extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
        self.buf.push(NFPROTO_INET);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Starts an attribute; returns where it starts (for `end`).
    fn attr(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        start
    }

    /// Ends the attribute or message at `start`: its length, then padding to 4 bytes.
    fn end<const N: usize>(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + N].copy_from_slice(&len.to_ne_bytes()[..N]);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn bytes_attr(&mut self, kind: u16, data: &[u8]) {
        let at = self.attr(kind);
        self.buf.extend_from_slice(data);
        self.end::<2>(at);
    }

    fn text_attr(&mut self, kind: u16, text: &str) {
        let at = self.attr(kind);
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(0);
        self.end::<2>(at);
    }
}

/// The batch that makes `changes`, and the sequence numbers of the messages acknowledged.
fn batch(changes: &[SetElements]) -> (Vec<u8>, std::ops::RangeInclusive<u32>) {
    let mut b = Batch {
        buf: Vec::with_capacity(256),
        seq: 0,
    };
    let begin = b.message(NFNL_MSG_BATCH_BEGIN, 0, NFNL_SUBSYS_NFTABLES);
    b.end::<4>(begin);
    for change in changes {
        let (kind, flags) = if change.add {
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_ACK)
        };
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | kind;
        let msg = b.message(kind, flags, 0);
        b.text_attr(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        b.text_attr(NFTA_SET_ELEM_LIST_SET, &change.set);
        let list = b.attr(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
        for address in &change.elements {
            let elem = b.attr(NFTA_LIST_ELEM | NLA_F_NESTED);
            let key = b.attr(NFTA_SET_ELEM_KEY | NLA_F_NESTED);
            match address {
                IpAddr::V4(a) => b.bytes_attr(NFTA_DATA_VALUE, &a.octets()),
                IpAddr::V6(a) => b.bytes_attr(NFTA_DATA_VALUE, &a.octets()),
            }
            b.end::<2>(key);
            b.end::<2>(elem);
        }
        b.end::<2>(list);
        b.end::<4>(msg);
    }
    let acked = 2..=b.seq;
    let end = b.message(NFNL_MSG_BATCH_END, 0, NFNL_SUBSYS_NFTABLES);
    b.end::<4>(end);
    (b.buf, acked)
}

/// Sends one request of `kind` without attributes, for no family in particular (AF_UNSPEC).
fn request(socket: &OwnedFd, kind: u16, flags: u16) -> Result<(), NftError> {
    let mut b = Batch {
        buf: Vec::with_capacity(32),
        seq: 0,
    };
    let msg = b.message(kind, flags, 0);
    b.buf[msg + 16] = 0;
    b.end::<4>(msg);
    rustix::net::sendto(
        socket,
        &b.buf,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map(drop)
    .map_err(|e| NftError::Spawn(format!("netlink: {e}")))
}

/// The ruleset's generation in the socket's namespace: a number the kernel changes with
/// every transaction committed there, by anyone, and with nothing else.
pub(crate) fn generation(socket: &OwnedFd) -> Result<u32, NftError> {
    // AF_UNSPEC: the generation is the namespace's, not a family's.
    request(socket, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, 0)?;
    let io = |e: rustix::io::Errno| NftError::Spawn(format!("netlink: {e}"));
    let mut buf = vec![0u8; 8 * 1024];
    let (n, _) = rustix::net::recv(socket, &mut buf[..], RecvFlags::empty()).map_err(io)?;
    let (kind, _, body) = messages(&buf[..n])
        .next()
        .unwrap_or_else(|| Err(NftError::Spawn("netlink: no generation answer".into())))?;
    if kind == NLMSG_ERROR {
        return Err(NftError::Rejected(format!(
            "netlink generation: {}",
            errno(body)
        )));
    }
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return Err(NftError::Spawn(
            "netlink: an unexpected generation answer".into(),
        ));
    }
    // Attributes after `nfgenmsg` (4 bytes).
    let id = attributes(body.get(4..).unwrap_or_default())
        .find(|&(kind, value)| kind == NFTA_GEN_ID && value.len() >= 4)
        .map(|(_, value)| u32::from_be_bytes(value[..4].try_into().expect("4")));
    id.ok_or_else(|| NftError::Spawn("netlink: a generation answer without its id".into()))
}

/// The messages in one read from a netlink socket: (type, sequence number, what follows
/// the 16-byte header), or an error at the first one cut short.
fn messages(buf: &[u8]) -> impl Iterator<Item = Result<(u16, u32, &[u8]), NftError>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + 16)?;
        let word = |o: usize| u32::from_ne_bytes(head[o..o + 4].try_into().expect("4 bytes"));
        let len = word(0) as usize;
        let Some(body) = buf.get(at + 16..at + len).filter(|_| len >= 16) else {
            at = buf.len();
            return Some(Err(NftError::Spawn("netlink: a truncated answer".into())));
        };
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        at += (len + 3) & !3;
        Some(Ok((kind, word(8), body)))
    })
}

/// The error an `NLMSG_ERROR` message's body carries (0 for an acknowledgement).
fn errno(body: &[u8]) -> std::io::Error {
    let errno = body
        .get(..4)
        .map_or(0, |e| i32::from_ne_bytes(e.try_into().expect("4")));
    std::io::Error::from_raw_os_error(-errno)
}

/// The attributes in `buf`: (kind without its flags, payload).
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
        let kind = u16::from_ne_bytes([head[2], head[3]]) & 0x3fff;
        let payload = buf.get(at + 4..at + len.max(4))?;
        at += (len.max(4) + 3) & !3;
        Some((kind, payload))
    })
}

/// One tracked connection of a ctnetlink dump message's attributes, in its original
/// direction; `None` when it lacks an address (no family the agent judges).
fn tracked(attrs: &[u8]) -> Option<Tracked> {
    let (mut source, mut destination) = (None, None);
    let (mut protocol, mut source_port, mut destination_port, mut zone) = (0, 0, 0, 0);
    let be16 = |v: &[u8]| v.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    for (kind, value) in attributes(attrs) {
        match kind {
            CTA_TUPLE_ORIG => {
                for (kind, value) in attributes(value) {
                    match kind {
                        CTA_TUPLE_IP => {
                            for (kind, v) in attributes(value) {
                                let address = match (kind, v.len()) {
                                    (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                                        IpAddr::from(<[u8; 4]>::try_from(v).ok()?)
                                    }
                                    (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                                        IpAddr::from(<[u8; 16]>::try_from(v).ok()?)
                                    }
                                    _ => continue,
                                };
                                match kind {
                                    CTA_IP_V4_SRC | CTA_IP_V6_SRC => source = Some(address),
                                    _ => destination = Some(address),
                                }
                            }
                        }
                        CTA_TUPLE_PROTO => {
                            for (kind, v) in attributes(value) {
                                match kind {
                                    CTA_PROTO_NUM => protocol = v.first().copied().unwrap_or(0),
                                    CTA_PROTO_SRC_PORT => source_port = be16(v),
                                    CTA_PROTO_DST_PORT => destination_port = be16(v),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            CTA_ZONE => zone = be16(value),
            _ => {}
        }
    }
    // Ports only for the protocols that have them (ICMP's id travels in the same place).
    if !matches!(protocol, 6 | 17 | 33 | 132 | 136) {
        (source_port, destination_port) = (0, 0);
    }
    Some(Tracked {
        protocol,
        source: source?,
        destination: destination?,
        source_port,
        destination_port,
        zone,
    })
}

/// Every connection the socket's namespace tracks, of both address families, by one
/// ctnetlink dump.
pub(crate) fn tracked_connections(socket: &OwnedFd) -> Result<Vec<Tracked>, NftError> {
    // AF_UNSPEC: every family.
    request(
        socket,
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_DUMP,
    )?;
    let io = |e: rustix::io::Errno| NftError::Spawn(format!("netlink: {e}"));
    let mut found = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, _) = rustix::net::recv(socket, &mut buf[..], RecvFlags::empty()).map_err(io)?;
        for message in messages(&buf[..n]) {
            match message? {
                (NLMSG_DONE, _, _) => return Ok(found),
                (NLMSG_ERROR, _, body) => {
                    return Err(NftError::Rejected(format!(
                        "netlink conntrack dump: {}",
                        errno(body)
                    )))
                }
                (kind, _, body) if kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                    // Attributes after `nfgenmsg` (4 bytes).
                    found.extend(body.get(4..).and_then(tracked));
                }
                _ => {}
            }
        }
    }
}

/// Sends `changes` as one transaction on `socket` and waits for the kernel's answer to
/// every message. On an error the kernel applied none of it, but the socket may still hold
/// answers: the caller drops it.
pub(crate) fn apply(socket: &OwnedFd, changes: &[SetElements]) -> Result<(), NftError> {
    let (bytes, acked) = batch(changes);
    let io = |e: rustix::io::Errno| NftError::Spawn(format!("netlink: {e}"));
    rustix::net::sendto(
        socket,
        &bytes,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map_err(io)?;
    let mut waiting = acked.clone().count();
    let mut buf = vec![0u8; 64 * 1024];
    while waiting > 0 {
        let (n, _) = rustix::net::recv(socket, &mut buf[..], RecvFlags::empty()).map_err(io)?;
        for message in messages(&buf[..n]) {
            let (kind, seq, body) = message?;
            if kind == NLMSG_ERROR && body.len() >= 4 {
                let error = errno(body);
                if error.raw_os_error() != Some(0) {
                    return Err(NftError::Rejected(format!(
                        "netlink set element update: {error}"
                    )));
                }
                if acked.contains(&seq) {
                    waiting -= 1;
                }
            }
        }
    }
    Ok(())
}
