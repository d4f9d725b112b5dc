//! A five-field first-match packet classifier: a HyperSplit-style binary decision tree over
//! (protocol, destination port, source port, peer address, local address) with short,
//! precedence-ordered leaves.
//!
//! Why this shape: ECS rules are boxes in five dimensions and the answer is the
//! best-precedence box containing the packet. A tree that splits the space at rule edges
//! reaches, in one dependent load per level, a leaf whose few candidate rules are already in
//! precedence order, so the first full match is the answer. Two ECS facts keep leaves short:
//! within a leaf, a rule that covers the leaf's whole box shadows every later rule there, so
//! those are pruned at build time; and group references are a per-rule membership check
//! (done last, lazily) rather than one box per member, so a member joining a group touches
//! nothing here.
//!
//! Incremental changes walk the rule's box down the tree and edit only the leaves it
//! overlaps. A leaf that grows too long is rebuilt into a subtree; a pruned leaf that loses
//! a rule is rebuilt from the master list (the lost rule may have been shadowing others);
//! orphaned nodes are reclaimed by a full rebuild once they outnumber the live ones.

use std::fmt::Debug;
use std::mem::size_of;

/// Number of fields: protocol, destination port, source port, peer address, local address.
pub(crate) const DIMS: usize = 5;
/// `Entry::group` of a rule without a group-reference peer.
pub(crate) const NO_GROUP: u32 = u32::MAX;

/// Leaves at most this long are not split further.
const BINTH: usize = 6;
/// An incremental insert that makes a leaf longer than this rebuilds it as a subtree.
const REBUILD_AT: usize = 24;
/// Depth cap: a safety net for pathological inputs, far above what real sets reach.
const MAX_DEPTH: u32 = 48;
const LEAF: u8 = u8::MAX;

/// Unsigned keys wide enough for every field of one address family.
pub(crate) trait Key: Copy + Ord + Default + Debug + 'static {
    /// The largest key.
    const MAX: Self;
    /// Widens a port or protocol number.
    fn from_u16(v: u16) -> Self;
    /// `self + 1`; never called on `MAX`.
    fn succ(self) -> Self;
    /// `self - 1`; never called on 0.
    fn pred(self) -> Self;
}

impl Key for u32 {
    const MAX: u32 = u32::MAX;
    fn from_u16(v: u16) -> u32 {
        u32::from(v)
    }
    fn succ(self) -> u32 {
        self + 1
    }
    fn pred(self) -> u32 {
        self - 1
    }
}

impl Key for u128 {
    const MAX: u128 = u128::MAX;
    fn from_u16(v: u16) -> u128 {
        u128::from(v)
    }
    fn succ(self) -> u128 {
        self + 1
    }
    fn pred(self) -> u128 {
        self - 1
    }
}

/// One box of one rule. A rule whose peer is a prefix list has one entry per CIDR, all with
/// the rule's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<K> {
    /// Inclusive lower bounds per field.
    pub lo: [K; DIMS],
    /// Inclusive upper bounds per field.
    pub hi: [K; DIMS],
    /// Precedence: smaller decides first.
    pub prec: u64,
    /// The rule's slot in its policy set.
    pub id: u32,
    /// Group index the peer must belong to, or [`NO_GROUP`].
    pub group: u32,
}

impl<K: Key> Entry<K> {
    #[inline(always)]
    fn contains(&self, key: &[K; DIMS]) -> bool {
        // `&` rather than `&&`: five cheap comparisons without branches beat early exits.
        (self.lo[0] <= key[0])
            & (key[0] <= self.hi[0])
            & (self.lo[1] <= key[1])
            & (key[1] <= self.hi[1])
            & (self.lo[2] <= key[2])
            & (key[2] <= self.hi[2])
            & (self.lo[3] <= key[3])
            & (key[3] <= self.hi[3])
            & (self.lo[4] <= key[4])
            & (key[4] <= self.hi[4])
    }

    fn overlaps(&self, bx: &Region<K>) -> bool {
        (0..DIMS).all(|d| self.lo[d] <= bx.hi[d] && bx.lo[d] <= self.hi[d])
    }

    fn covers(&self, bx: &Region<K>) -> bool {
        self.group == NO_GROUP
            && (0..DIMS).all(|d| self.lo[d] <= bx.lo[d] && bx.hi[d] <= self.hi[d])
    }
}

/// The part of the key space a node is responsible for.
#[derive(Debug, Clone, Copy)]
struct Region<K> {
    lo: [K; DIMS],
    hi: [K; DIMS],
}

impl<K: Key> Region<K> {
    fn full() -> Self {
        Region {
            lo: [K::default(); DIMS],
            hi: [K::MAX; DIMS],
        }
    }

    fn split(&self, dim: usize, thr: K) -> (Self, Self) {
        let (mut left, mut right) = (*self, *self);
        left.hi[dim] = thr.pred();
        right.lo[dim] = thr;
        (left, right)
    }
}

/// A tree node: a split (`key[dim] < thr` goes to `child`, else to `child + 1`) or a leaf
/// (`dim == LEAF`, `child` indexes `leaves`).
#[derive(Debug, Clone, Copy)]
struct Node<K> {
    thr: K,
    dim: u8,
    child: u32,
}

#[derive(Debug, Clone)]
struct Leaf<K> {
    /// Entries overlapping `region`, by precedence, cut after the first covering one.
    entries: Vec<Entry<K>>,
    /// Whether entries were cut: removing one then needs the master list.
    pruned: bool,
}

/// The classifier. Node 0 is the root.
#[derive(Debug, Clone)]
pub(crate) struct Classifier<K> {
    nodes: Vec<Node<K>>,
    leaves: Vec<Leaf<K>>,
    /// Master copy of every entry, by rule id.
    by_id: Vec<Vec<Entry<K>>>,
    /// Nodes and leaves orphaned by partial rebuilds.
    garbage: usize,
}

impl<K: Key> Default for Classifier<K> {
    fn default() -> Self {
        Classifier::build(Vec::new())
    }
}

impl<K: Key> Classifier<K> {
    /// Builds from scratch.
    pub fn build(entries: Vec<Entry<K>>) -> Self {
        let mut by_id: Vec<Vec<Entry<K>>> = Vec::new();
        for e in entries {
            let id = e.id as usize;
            if by_id.len() <= id {
                by_id.resize_with(id + 1, Vec::new);
            }
            by_id[id].push(e);
        }
        let mut c = Classifier {
            nodes: Vec::new(),
            leaves: Vec::new(),
            by_id,
            garbage: 0,
        };
        c.rebuild();
        c
    }

    fn rebuild(&mut self) {
        let mut all: Vec<Entry<K>> = self.by_id.iter().flatten().copied().collect();
        all.sort_by_key(|e| e.prec);
        self.nodes.clear();
        self.leaves.clear();
        self.garbage = 0;
        self.nodes.push(Node {
            thr: K::default(),
            dim: LEAF,
            child: 0,
        });
        let root = self.build_node(all, Region::full(), 0, false);
        self.nodes[0] = root;
    }

    /// Builds the subtree of `region` from its entries (sorted by precedence) and returns
    /// its root node; children are appended to `nodes`.
    fn build_node(
        &mut self,
        mut entries: Vec<Entry<K>>,
        region: Region<K>,
        depth: u32,
        pruned: bool,
    ) -> Node<K> {
        let mut pruned = pruned;
        if let Some(i) = entries.iter().position(|e| e.covers(&region)) {
            if i + 1 < entries.len() {
                entries.truncate(i + 1);
                pruned = true;
            }
        }
        if entries.len() > BINTH && depth < MAX_DEPTH {
            if let Some((dim, thr)) = choose_split(&entries, &region) {
                let left: Vec<_> = entries
                    .iter()
                    .filter(|e| e.lo[dim] < thr)
                    .copied()
                    .collect();
                let right: Vec<_> = entries
                    .iter()
                    .filter(|e| e.hi[dim] >= thr)
                    .copied()
                    .collect();
                if left.len() + right.len() < 2 * entries.len() {
                    drop(entries);
                    let (lr, rr) = region.split(dim, thr);
                    let at = self.nodes.len();
                    let placeholder = Node {
                        thr: K::default(),
                        dim: LEAF,
                        child: 0,
                    };
                    self.nodes.extend([placeholder, placeholder]);
                    let l = self.build_node(left, lr, depth + 1, pruned);
                    self.nodes[at] = l;
                    let r = self.build_node(right, rr, depth + 1, pruned);
                    self.nodes[at + 1] = r;
                    return Node {
                        thr,
                        dim: dim as u8,
                        child: at as u32,
                    };
                }
            }
        }
        let child = self.leaves.len() as u32;
        self.leaves.push(Leaf { entries, pruned });
        Node {
            thr: K::default(),
            dim: LEAF,
            child,
        }
    }

    /// The best-precedence entry containing `key` whose group check (if any) passes.
    #[inline]
    pub fn lookup(&self, key: &[K; DIMS], in_group: impl Fn(u32) -> bool) -> Option<&Entry<K>> {
        let mut node = self.nodes[0];
        while node.dim != LEAF {
            let next = node.child + u32::from(key[node.dim as usize] >= node.thr);
            node = self.nodes[next as usize];
        }
        self.leaves[node.child as usize]
            .entries
            .iter()
            .find(|e| e.contains(key) && (e.group == NO_GROUP || in_group(e.group)))
    }

    /// Visits the leaves whose regions overlap `e`, with their node index and depth.
    fn leaves_overlapping(&self, e: &Entry<K>) -> Vec<(usize, Region<K>, u32)> {
        let mut found = Vec::new();
        let mut stack = vec![(0usize, Region::full(), 0u32)];
        while let Some((n, region, depth)) = stack.pop() {
            let node = self.nodes[n];
            if node.dim == LEAF {
                found.push((n, region, depth));
                continue;
            }
            let dim = node.dim as usize;
            let (lr, rr) = region.split(dim, node.thr);
            if e.lo[dim] < node.thr {
                stack.push((node.child as usize, lr, depth + 1));
            }
            if e.hi[dim] >= node.thr {
                stack.push((node.child as usize + 1, rr, depth + 1));
            }
        }
        found
    }

    /// Adds entries (all of one new rule id).
    pub fn insert(&mut self, entries: &[Entry<K>]) {
        for e in entries {
            let id = e.id as usize;
            if self.by_id.len() <= id {
                self.by_id.resize_with(id + 1, Vec::new);
            }
            self.by_id[id].push(*e);
            for (n, region, depth) in self.leaves_overlapping(e) {
                let leaf = &mut self.leaves[self.nodes[n].child as usize];
                let at = leaf.entries.partition_point(|x| x.prec <= e.prec);
                if leaf.entries[..at].iter().any(|x| x.covers(&region)) {
                    leaf.pruned = true;
                    continue;
                }
                leaf.entries.insert(at, *e);
                if e.covers(&region) && leaf.entries.len() > at + 1 {
                    leaf.entries.truncate(at + 1);
                    leaf.pruned = true;
                }
                if leaf.entries.len() > REBUILD_AT {
                    let entries = std::mem::take(&mut leaf.entries);
                    let pruned = leaf.pruned;
                    self.replace(n, entries, region, depth, pruned);
                }
            }
        }
        self.collect_garbage();
    }

    /// Removes every entry of a rule id.
    pub fn remove(&mut self, id: u32) {
        let Some(entries) = self.by_id.get_mut(id as usize).map(std::mem::take) else {
            return;
        };
        for e in &entries {
            for (n, region, depth) in self.leaves_overlapping(e) {
                let leaf = &mut self.leaves[self.nodes[n].child as usize];
                let before = leaf.entries.len();
                leaf.entries.retain(|x| x.id != id);
                if leaf.pruned && leaf.entries.len() < before {
                    // The removed entry may have shadowed others here: start again from all.
                    let mut all: Vec<Entry<K>> = self
                        .by_id
                        .iter()
                        .flatten()
                        .filter(|x| x.overlaps(&region))
                        .copied()
                        .collect();
                    all.sort_by_key(|x| x.prec);
                    self.replace(n, all, region, depth, false);
                }
            }
        }
        self.collect_garbage();
    }

    fn replace(
        &mut self,
        n: usize,
        entries: Vec<Entry<K>>,
        region: Region<K>,
        depth: u32,
        pruned: bool,
    ) {
        self.garbage += 1;
        let node = self.build_node(entries, region, depth, pruned);
        self.nodes[n] = node;
    }

    fn collect_garbage(&mut self) {
        if self.garbage > 64 && self.garbage * 2 > self.leaves.len() {
            self.rebuild();
        }
    }

    /// Bytes held by the structure (tree, leaves and master list).
    pub fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * size_of::<Node<K>>()
            + self.leaves.capacity() * size_of::<Leaf<K>>()
            + self
                .leaves
                .iter()
                .map(|l| l.entries.capacity() * size_of::<Entry<K>>())
                .sum::<usize>()
            + self.by_id.capacity() * size_of::<Vec<Entry<K>>>()
            + self
                .by_id
                .iter()
                .map(|v| v.capacity() * size_of::<Entry<K>>())
                .sum::<usize>()
    }

    /// (tree nodes, leaves, longest leaf, deepest level), for the benchmark report.
    pub fn shape(&self) -> (usize, usize, usize, u32) {
        let longest = self
            .leaves
            .iter()
            .map(|l| l.entries.len())
            .max()
            .unwrap_or(0);
        let mut deepest = 0;
        let mut stack = vec![(0usize, 0u32)];
        while let Some((n, d)) = stack.pop() {
            let node = self.nodes[n];
            if node.dim == LEAF {
                deepest = deepest.max(d);
            } else {
                stack.push((node.child as usize, d + 1));
                stack.push((node.child as usize + 1, d + 1));
            }
        }
        (self.nodes.len(), self.leaves.len(), longest, deepest)
    }
}

/// Picks the field and threshold that split `entries` best: per field, the median of the
/// rule edges inside the region; the field whose larger side is smallest wins (ties: less
/// replication).
fn choose_split<K: Key>(entries: &[Entry<K>], region: &Region<K>) -> Option<(usize, K)> {
    let mut best: Option<((usize, usize), usize, K)> = None;
    let mut points = Vec::with_capacity(entries.len() * 2);
    for dim in 0..DIMS {
        points.clear();
        for e in entries {
            if e.lo[dim] > region.lo[dim] {
                points.push(e.lo[dim]);
            }
            if e.hi[dim] < region.hi[dim] {
                points.push(e.hi[dim].succ());
            }
        }
        if points.is_empty() {
            continue;
        }
        let mid = points.len() / 2;
        let thr = *points.select_nth_unstable(mid).1;
        let left = entries.iter().filter(|e| e.lo[dim] < thr).count();
        let right = entries.iter().filter(|e| e.hi[dim] >= thr).count();
        let cost = (left.max(right), left + right);
        if best.is_none_or(|(c, _, _)| cost < c) {
            best = Some((cost, dim, thr));
        }
    }
    best.map(|(_, dim, thr)| (dim, thr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, prec: u64, lo: [u32; DIMS], hi: [u32; DIMS]) -> Entry<u32> {
        Entry {
            lo,
            hi,
            prec,
            id,
            group: NO_GROUP,
        }
    }

    /// A brute-force first match over the same entries.
    fn scan(entries: &[Entry<u32>], key: &[u32; DIMS]) -> Option<u32> {
        entries
            .iter()
            .filter(|e| e.contains(key))
            .min_by_key(|e| e.prec)
            .map(|e| e.id)
    }

    #[test]
    fn agrees_with_a_scan_through_inserts_and_removes() {
        let mut seed = 7u64;
        let mut next = move |m: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as u32) % m
        };
        let mut live: Vec<Entry<u32>> = Vec::new();
        let mut c = Classifier::<u32>::default();
        for round in 0..600u32 {
            if round % 3 == 2 && !live.is_empty() {
                let victim = live.remove(next(live.len() as u32) as usize);
                c.remove(victim.id);
            } else {
                let mut lo = [0; DIMS];
                let mut hi = [0; DIMS];
                for d in 0..DIMS {
                    let a = next(64);
                    let b = next(64);
                    (lo[d], hi[d]) = (a.min(b), a.max(b));
                    if next(4) == 0 {
                        (lo[d], hi[d]) = (0, u32::MAX);
                    }
                }
                let e = entry(round, u64::from(next(50)) << 32 | u64::from(round), lo, hi);
                live.push(e);
                c.insert(&[e]);
            }
            for _ in 0..20 {
                let key = [next(70), next(70), next(70), next(70), next(70)];
                let got = c.lookup(&key, |_| true).map(|e| e.id);
                assert_eq!(got, scan(&live, &key), "round {round} key {key:?}");
            }
        }
        let rebuilt = Classifier::build(live.clone());
        for _ in 0..500 {
            let key = [next(70), next(70), next(70), next(70), next(70)];
            assert_eq!(
                rebuilt.lookup(&key, |_| true).map(|e| e.id),
                scan(&live, &key)
            );
        }
    }
}
