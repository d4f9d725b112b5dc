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
const BINTH: usize = 16;
/// An incremental insert that makes a leaf longer than this rebuilds it as a subtree.
const REBUILD_AT: usize = BINTH * 4;
/// Depth cap: a safety net for pathological inputs, far above what real sets reach.
const MAX_DEPTH: u32 = 48;
const NO_LEAF: u32 = u32::MAX;

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
    /// Whether `lo..=hi` spans more than half the key's bits.
    fn wide(lo: Self, hi: Self) -> bool;
    /// `self - other` modulo the key's width.
    fn wrapping_sub(self, other: Self) -> Self;
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
    fn wide(lo: u32, hi: u32) -> bool {
        hi - lo > 0xffff
    }
    fn wrapping_sub(self, other: u32) -> u32 {
        u32::wrapping_sub(self, other)
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
    fn wide(lo: u128, hi: u128) -> bool {
        hi - lo > u128::from(u64::MAX)
    }
    fn wrapping_sub(self, other: u128) -> u128 {
        u128::wrapping_sub(self, other)
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
    /// Whether the box contains `key` (the tests' brute-force oracle).
    #[cfg(test)]
    fn contains(&self, key: &[K; DIMS]) -> bool {
        (0..DIMS).all(|d| self.lo[d] <= key[d] && key[d] <= self.hi[d])
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
/// (`leaf` indexes `leaves`). A leaf's split is rigged to lead back to itself (`thr` 0 and
/// `child + 1` its own slot), so a lookup walks a fixed number of steps without testing
/// for leaves: no branch to mispredict.
#[derive(Debug, Clone, Copy)]
struct Node<K> {
    thr: K,
    child: u32,
    leaf: u32,
    dim: u8,
}

impl<K: Key> Node<K> {
    fn leaf(index: u32) -> Self {
        Node {
            thr: K::default(),
            child: 0,
            leaf: index,
            dim: 0,
        }
    }

    fn is_leaf(&self) -> bool {
        self.leaf != NO_LEAF
    }
}

#[derive(Debug, Clone)]
struct Leaf<K> {
    /// Entries overlapping `region`, by precedence, cut after the first covering one.
    entries: Vec<Entry<K>>,
    /// Whether entries were cut: removing one then needs the master list.
    pruned: bool,
    /// The entries' bounds laid out for matching [`LANES`] at a time: one chunk per
    /// [`LANES`] entries, holding per field a row of lower bounds and a row of spans
    /// (`hi - lo`). Rebuilt by [`Leaf::new`] whenever `entries` change.
    block: Vec<Chunk<K>>,
}

/// Entries matched together in one step of a leaf scan (a vector's worth of `u32`).
const LANES: usize = 8;

/// Rows `2d` (lower bounds) and `2d + 1` (spans) of field `d` for [`LANES`] entries.
type Chunk<K> = [[K; LANES]; 2 * DIMS];

impl<K: Key> Leaf<K> {
    fn new(entries: Vec<Entry<K>>, pruned: bool) -> Self {
        let mut block = vec![[[K::default(); LANES]; 2 * DIMS]; entries.len().div_ceil(LANES)];
        for (i, e) in entries.iter().enumerate() {
            let chunk = &mut block[i / LANES];
            for d in 0..DIMS {
                chunk[2 * d][i % LANES] = e.lo[d];
                chunk[2 * d + 1][i % LANES] = e.hi[d].wrapping_sub(e.lo[d]);
            }
        }
        Leaf {
            entries,
            pruned,
            block,
        }
    }

    /// The first entry (best precedence) containing `key` whose group check passes.
    ///
    /// Each step tests [`LANES`] entries on all five fields with `key - lo <= span`
    /// (wrapping), written as lane-wise masks so the compiler emits vector instructions.
    #[inline]
    fn first_match(&self, key: &[K; DIMS], in_group: &impl Fn(u32) -> bool) -> Option<&Entry<K>> {
        for (c, chunk) in self.block.iter().enumerate() {
            let mut acc = [u32::MAX; LANES];
            for d in 0..DIMS {
                let (lo, span) = (&chunk[2 * d], &chunk[2 * d + 1]);
                for i in 0..LANES {
                    acc[i] &= u32::from(key[d].wrapping_sub(lo[i]) <= span[i]).wrapping_neg();
                }
            }
            let mut mask = 0u32;
            for (i, a) in acc.iter().enumerate() {
                mask |= a & (1 << i);
            }
            let valid = self.entries.len() - c * LANES;
            if valid < LANES {
                mask &= (1 << valid) - 1;
            }
            while mask != 0 {
                let e = &self.entries[c * LANES + mask.trailing_zeros() as usize];
                if e.group == NO_GROUP || in_group(e.group) {
                    return Some(e);
                }
                mask &= mask - 1;
            }
        }
        None
    }
}

/// One decision tree. Node 0 is the root.
#[derive(Debug, Clone)]
struct Tree<K> {
    nodes: Vec<Node<K>>,
    leaves: Vec<Leaf<K>>,
    /// Master copy of every entry, by rule id.
    by_id: Vec<Vec<Entry<K>>>,
    /// Nodes and leaves orphaned by partial rebuilds.
    garbage: usize,
    /// A lower bound of the precedence of every entry (exact after a full build).
    min_prec: u64,
    /// The deepest leaf's depth: the steps a lookup takes.
    depth: u32,
}

impl<K: Key> Tree<K> {
    /// Builds from scratch.
    fn build(entries: Vec<Entry<K>>) -> Self {
        let mut by_id: Vec<Vec<Entry<K>>> = Vec::new();
        for e in entries {
            let id = e.id as usize;
            if by_id.len() <= id {
                by_id.resize_with(id + 1, Vec::new);
            }
            by_id[id].push(e);
        }
        let mut c = Tree {
            nodes: Vec::new(),
            leaves: Vec::new(),
            by_id,
            garbage: 0,
            min_prec: u64::MAX,
            depth: 0,
        };
        c.rebuild();
        c
    }

    fn rebuild(&mut self) {
        let mut all: Vec<Entry<K>> = self.by_id.iter().flatten().copied().collect();
        all.sort_by_key(|e| e.prec);
        self.min_prec = all.first().map_or(u64::MAX, |e| e.prec);
        self.nodes.clear();
        self.leaves.clear();
        self.garbage = 0;
        self.depth = 0;
        self.nodes.push(Node::leaf(0));
        let root = self.build_node(all, Region::full(), 0, false);
        self.place(0, root);
    }

    /// Stores a node in its slot; a leaf is pointed back at itself.
    fn place(&mut self, slot: usize, mut node: Node<K>) {
        if node.is_leaf() {
            node.child = (slot as u32).wrapping_sub(1);
        }
        self.nodes[slot] = node;
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
                    self.nodes.extend([Node::leaf(0), Node::leaf(0)]);
                    let l = self.build_node(left, lr, depth + 1, pruned);
                    self.place(at, l);
                    let r = self.build_node(right, rr, depth + 1, pruned);
                    self.place(at + 1, r);
                    return Node {
                        thr,
                        child: at as u32,
                        leaf: NO_LEAF,
                        dim: dim as u8,
                    };
                }
            }
        }
        self.depth = self.depth.max(depth);
        self.leaves.push(Leaf::new(entries, pruned));
        Node::leaf((self.leaves.len() - 1) as u32)
    }

    /// Visits the leaves whose regions overlap `e`, with their node index and depth.
    fn leaves_overlapping(&self, e: &Entry<K>) -> Vec<(usize, Region<K>, u32)> {
        let mut found = Vec::new();
        let mut stack = vec![(0usize, Region::full(), 0u32)];
        while let Some((n, region, depth)) = stack.pop() {
            let node = self.nodes[n];
            if node.is_leaf() {
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
    fn insert(&mut self, entries: &[Entry<K>]) {
        for e in entries {
            self.min_prec = self.min_prec.min(e.prec);
            let id = e.id as usize;
            if self.by_id.len() <= id {
                self.by_id.resize_with(id + 1, Vec::new);
            }
            self.by_id[id].push(*e);
            for (n, region, depth) in self.leaves_overlapping(e) {
                let leaf = &mut self.leaves[self.nodes[n].leaf as usize];
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
                } else {
                    *leaf = Leaf::new(std::mem::take(&mut leaf.entries), leaf.pruned);
                }
            }
        }
        self.collect_garbage();
    }

    /// Removes every entry of a rule id.
    fn remove(&mut self, id: u32) {
        let Some(entries) = self.by_id.get_mut(id as usize).map(std::mem::take) else {
            return;
        };
        for e in &entries {
            for (n, region, depth) in self.leaves_overlapping(e) {
                let leaf = &mut self.leaves[self.nodes[n].leaf as usize];
                let before = leaf.entries.len();
                leaf.entries.retain(|x| x.id != id);
                if leaf.entries.len() < before {
                    *leaf = Leaf::new(std::mem::take(&mut leaf.entries), leaf.pruned);
                }
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
        self.place(n, node);
    }

    fn collect_garbage(&mut self) {
        if self.garbage > 64 && self.garbage * 2 > self.leaves.len() {
            self.rebuild();
        }
    }

    /// Bytes held by the structure (tree, leaves and master list).
    fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * size_of::<Node<K>>()
            + self.leaves.capacity() * size_of::<Leaf<K>>()
            + self
                .leaves
                .iter()
                .map(|l| {
                    l.entries.capacity() * size_of::<Entry<K>>()
                        + l.block.capacity() * size_of::<Chunk<K>>()
                })
                .sum::<usize>()
            + self.by_id.capacity() * size_of::<Vec<Entry<K>>>()
            + self
                .by_id
                .iter()
                .map(|v| v.capacity() * size_of::<Entry<K>>())
                .sum::<usize>()
    }

    /// (tree nodes, leaves, longest leaf, deepest level), for the benchmark report.
    fn shape(&self) -> (usize, usize, usize, u32) {
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
            if node.is_leaf() {
                deepest = deepest.max(d);
            } else {
                stack.push((node.child as usize, d + 1));
                stack.push((node.child as usize + 1, d + 1));
            }
        }
        (self.nodes.len(), self.leaves.len(), longest, deepest)
    }
}

/// Rules are spread over [`TREES`] trees by which address fields they leave wide open, so
/// that a tree splits on the fields its rules are narrow in and wide rules are not copied
/// into every leaf (the EffiCuts lesson: mixing wildcard-heavy and specific rules is what
/// makes decision trees blow up, as firewall sets show).
const TREES: usize = 4;

/// The classifier: the trees of [`TREES`] categories, searched in turn, skipping a tree whose
/// best entry cannot beat the match found so far.
#[derive(Debug, Clone)]
pub(crate) struct Classifier<K> {
    trees: [Tree<K>; TREES],
    /// The deepest of the trees.
    depth: u32,
}

impl<K: Key> Default for Classifier<K> {
    fn default() -> Self {
        Classifier::build(Vec::new())
    }
}

/// Whether a range covers more than half the bits of its key: `0.0.0.0/15` is wide, a /16
/// is narrow (for IPv6 the line is at /64).
fn wide<K: Key>(lo: K, hi: K) -> bool {
    K::wide(lo, hi)
}

fn category<K: Key>(e: &Entry<K>) -> usize {
    usize::from(wide(e.lo[3], e.hi[3])) * 2 + usize::from(wide(e.lo[4], e.hi[4]))
}

impl<K: Key> Classifier<K> {
    /// Builds from scratch.
    pub fn build(entries: Vec<Entry<K>>) -> Self {
        let mut parts: Vec<Vec<Entry<K>>> = vec![Vec::new(); TREES];
        for e in entries {
            parts[category(&e)].push(e);
        }
        let mut parts = parts.into_iter().map(Tree::build);
        let trees: [Tree<K>; TREES] =
            std::array::from_fn(|_| parts.next().expect("one part per tree"));
        let depth = trees.iter().map(|t| t.depth).max().unwrap_or(0);
        Classifier { trees, depth }
    }

    /// The best-precedence entry containing `key` whose group check (if any) passes.
    ///
    /// The trees are walked in lockstep, one level of each per step: their loads do not
    /// depend on each other, so the processor overlaps them and a lookup costs about one
    /// tree's depth of memory latency rather than the sum over trees.
    #[inline]
    pub fn lookup(&self, key: &[K; DIMS], in_group: impl Fn(u32) -> bool) -> Option<&Entry<K>> {
        let mut at = [0u32; TREES];
        for _ in 0..self.depth {
            for (i, tree) in at.iter_mut().zip(&self.trees) {
                let node = &tree.nodes[*i as usize];
                *i = node
                    .child
                    .wrapping_add(u32::from(key[node.dim as usize] >= node.thr));
            }
        }
        let mut best: Option<&Entry<K>> = None;
        for (i, tree) in at.iter().zip(&self.trees) {
            if best.is_some_and(|b| b.prec <= tree.min_prec) {
                continue;
            }
            let found =
                tree.leaves[tree.nodes[*i as usize].leaf as usize].first_match(key, &in_group);
            if let Some(e) = found {
                if best.is_none_or(|b| e.prec < b.prec) {
                    best = Some(e);
                }
            }
        }
        best
    }

    /// Adds entries (all of one new rule id).
    pub fn insert(&mut self, entries: &[Entry<K>]) {
        for e in entries {
            let t = &mut self.trees[category(e)];
            t.insert(std::slice::from_ref(e));
            self.depth = self.depth.max(t.depth);
        }
    }

    /// Removes every entry of a rule id.
    pub fn remove(&mut self, id: u32) {
        for t in &mut self.trees {
            t.remove(id);
        }
        self.depth = self.trees.iter().map(|t| t.depth).max().unwrap_or(0);
    }

    /// Bytes held by the structure.
    pub fn memory_bytes(&self) -> usize {
        self.trees.iter().map(Tree::memory_bytes).sum()
    }

    /// (tree nodes, leaves, longest leaf, deepest level) over all trees.
    pub fn shape(&self) -> (usize, usize, usize, u32) {
        self.trees
            .iter()
            .map(Tree::shape)
            .fold((0, 0, 0, 0), |a, s| {
                (a.0 + s.0, a.1 + s.1, a.2.max(s.2), a.3.max(s.3))
            })
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
