//! A five-field first-match packet classifier over (protocol, destination port, source
//! port, peer address, local address): decision trees with eight-way nodes and short,
//! precedence-ordered leaves.
//!
//! Why this shape: ECS rules are boxes in five dimensions and the answer is the
//! best-precedence box containing the packet. A tree that cuts the space at rule edges
//! reaches a leaf whose few candidate rules are already in precedence order, so the first
//! full match is the answer. Eight-way nodes (seven cuts compared at once) make trees three
//! times shallower than binary ones. Rules that leave an address field wide open would be
//! copied into every leaf of a tree that cuts that field, so rules are spread over four trees
//! by which address fields are wide (the EffiCuts lesson), walked independently.
//!
//! Two ECS facts keep leaves short: within a leaf, a rule that covers the leaf's whole box
//! shadows every later rule there, so those are pruned; and group references are a per-rule
//! membership check rather than one box per member, so a member joining a group touches
//! nothing here.
//!
//! Incremental changes walk the rule's box down the trees and edit only the leaves it
//! overlaps. A leaf that grows too long is rebuilt into a subtree; a pruned leaf that loses
//! a rule is rebuilt from the master list (the lost rule may have been shadowing others);
//! orphaned nodes are reclaimed by a full rebuild once they outnumber the live ones.

use std::fmt::Debug;
use std::mem::size_of;

/// Number of fields: protocol, destination port, source port, peer address, local address.
pub(crate) const DIMS: usize = 5;
/// `Entry::group` of a rule without a group-reference peer.
pub(crate) const NO_GROUP: u32 = u32::MAX;

/// Leaves at most this long are not split further (measured with the AVX2 scan: 24 against
/// 16 and 32, best on the 10K sets, within 2 ns on the others; a leaf of 24 is three vector
/// steps). The tree of rules wide in both addresses uses twice that: its rules overlap so
/// much that each level saved is worth more than the longer scan.
const BINTH: usize = 24;
/// Leaf size of the single tree (see [`Classifier::build`]): one chunk, so that a lookup is
/// one walk and one vector step.
const SINGLE_BINTH: usize = 8;
/// The single tree is kept when it needs at most this many times the four trees' bytes...
const SINGLE_GROWTH: usize = 8;
/// ...and at most this many bytes: a lookup then stays within a core's second-level cache
/// (measured: acl5_1k 71 → 50 ns at 3× the bytes, acl1_1k 74 → 55 ns at 6×; fw2_1k, whose
/// single tree would need 111 MB, goes from 70 to 250 ns).
const SINGLE_BYTES: usize = 2 << 20;
/// An incremental insert that makes a leaf longer than this many times its tree's leaf size
/// rebuilds it as a subtree.
const REBUILD_FACTOR: usize = 4;
/// Depth cap: a safety net for pathological inputs, far above what real sets reach.
const MAX_DEPTH: u32 = 48;
const NO_LEAF: u32 = u32::MAX;

/// Unsigned keys wide enough for every field of one address family.
pub(crate) trait Key: Lane + Default + Debug + 'static {
    /// The smallest key.
    const MIN: Self;
    /// The largest key.
    const MAX: Self;
    /// Widens a port or protocol number.
    fn from_u16(v: u16) -> Self;
    /// The low 16 bits: a port or protocol number back (or a span of them).
    fn low_u16(self) -> u16;
    /// `self + 1`; never called on `MAX`.
    fn succ(self) -> Self;
    /// `self - 1`; never called on 0.
    fn pred(self) -> Self;
    /// Whether `lo..=hi` spans more than half the key's bits.
    fn wide(lo: Self, hi: Self) -> bool;
}

/// What a leaf scan compares lane by lane: keys and the 16-bit port and protocol rows.
pub(crate) trait Lane: Copy + Ord {
    /// `self - other` modulo the type's width.
    fn wrapping_sub(self, other: Self) -> Self;
}

macro_rules! lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            fn wrapping_sub(self, other: $t) -> $t {
                <$t>::wrapping_sub(self, other)
            }
        }
    )*};
}
lane!(u16, u32, u128);

impl Key for u32 {
    const MIN: u32 = 0;
    const MAX: u32 = u32::MAX;
    fn from_u16(v: u16) -> u32 {
        u32::from(v)
    }
    fn low_u16(self) -> u16 {
        self as u16
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
}

impl Key for u128 {
    const MIN: u128 = 0;
    const MAX: u128 = u128::MAX;
    fn from_u16(v: u16) -> u128 {
        u128::from(v)
    }
    fn low_u16(self) -> u16 {
        self as u16
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

    /// The part of the region whose field `dim` is within `lo..=hi`.
    fn slice(&self, dim: usize, lo: K, hi: K) -> Self {
        let mut r = *self;
        r.lo[dim] = lo;
        r.hi[dim] = hi;
        r
    }
}

/// Children of one node at most: one node decides three binary levels' worth in one load.
const FANOUT: usize = 8;

/// A tree node: field `dim` cut into `arity` intervals; a key goes to child
/// `child + #{j : key[dim] > cut[j]}` (interval `j` ends at `cut[j]`; unused cuts are `MAX`,
/// which no key exceeds). A leaf (`leaf` indexes `leaves`) has every cut at `MAX` and `child`
/// at its own slot, so it leads back to itself: a lookup walks a fixed number of steps
/// without testing for leaves, and the cut comparison is one vector compare.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Node<K> {
    /// Eight slots for seven cuts: the last is always `MAX`, so the comparison is one
    /// vector of eight lanes.
    cut: [K; FANOUT],
    child: u32,
    leaf: u32,
    /// A leaf's chunks in the tree's arena (`chunks` of them from `chunk`) and its first
    /// entry's precedence (`u64::MAX` when empty): kept in the node so that a lookup goes
    /// from the node straight to the chunks, with no leaf record or vector header between.
    chunk: u32,
    chunks: u32,
    first_prec: u64,
    dim: u8,
    arity: u8,
}

impl<K: Key> Node<K> {
    fn leaf(index: u32) -> Self {
        Node {
            cut: [K::MAX; FANOUT],
            child: 0,
            leaf: index,
            chunk: 0,
            chunks: 0,
            first_prec: u64::MAX,
            dim: 0,
            arity: 1,
        }
    }

    fn is_leaf(&self) -> bool {
        self.leaf != NO_LEAF
    }

    /// The child slot a key moves to (a leaf's own slot for a leaf).
    #[inline(always)]
    fn next(&self, key: &[K; DIMS]) -> u32 {
        let k = key[usize::from(self.dim)];
        // Eight lane-wise comparisons summed: the compiler turns this into one vector
        // compare and a horizontal add.
        let mut gt = [0u32; FANOUT];
        for (g, &c) in gt.iter_mut().zip(&self.cut) {
            *g = u32::from(k > c);
        }
        self.child + gt.iter().sum::<u32>()
    }

    /// The children's slots and the regions they cover.
    fn children(&self, region: &Region<K>) -> impl Iterator<Item = (usize, Region<K>)> + '_ {
        let dim = self.dim as usize;
        let region = *region;
        (0..usize::from(self.arity)).map(move |i| {
            let lo = if i == 0 {
                region.lo[dim]
            } else {
                self.cut[i - 1].succ()
            };
            let hi = if i + 1 == usize::from(self.arity) {
                region.hi[dim]
            } else {
                self.cut[i]
            };
            (self.child as usize + i, region.slice(dim, lo, hi))
        })
    }
}

#[derive(Debug, Clone)]
struct Leaf<K> {
    /// Entries overlapping `region`, by precedence, cut after the first covering one.
    entries: Vec<Entry<K>>,
    /// Whether entries were cut: removing one then needs the master list.
    pruned: bool,
    /// Where the entries are laid out in the tree's chunk arena, and how many chunks that
    /// place holds (a leaf that shrinks keeps its place; one that outgrows it moves).
    chunk: u32,
    capacity: u32,
}

/// Keys judged together by the batch lookups: enough independent walks to keep the
/// memory system busy, few enough that their state stays in registers and L1.
pub(crate) const BATCH: usize = 8;

/// Entries matched together in one step of a leaf scan (a vector's worth of `u32`).
const LANES: usize = 8;

/// [`LANES`] entries of a leaf, as the scan reads them: per field a row of lower bounds
/// and a row of spans (`hi - lo`), and what an answer needs, so the scan never touches the
/// entries themselves. Lanes past a leaf's last entry have precedence `u64::MAX`: they may
/// match, but never beat anything, and come last.
///
/// Laid out in the order the scan reads: precedences (is the chunk worth scanning?), the
/// addresses (which rule out most entries), the ports and protocol, which fit 16 bits (a
/// chunk of `u32` keys is 352 bytes instead of 448), and what an answer needs.
#[derive(Debug, Clone, Copy)]
struct Chunk<K> {
    prec: [u64; LANES],
    /// Peer lower bounds, peer spans, local lower bounds, local spans.
    address: [[K; LANES]; 4],
    /// Lower bounds and spans of the protocol, destination port and source port
    /// (`small[2d]`, `small[2d + 1]` for field `d`).
    small: [[u16; LANES]; 6],
    id: [u32; LANES],
    group: [u32; LANES],
}

/// The answer of a lookup: the deciding entry's rule id and precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The rule's slot in its policy set.
    pub id: u32,
    /// Its precedence.
    pub prec: u64,
}

impl<K: Key> Chunk<K> {
    const EMPTY: Self = Chunk {
        prec: [u64::MAX; LANES],
        address: [[K::MIN; LANES]; 4],
        small: [[0; LANES]; 6],
        id: [0; LANES],
        group: [NO_GROUP; LANES],
    };

    /// Lays out entries (at most [`LANES`]).
    fn new(entries: &[Entry<K>]) -> Self {
        let mut chunk = Self::EMPTY;
        for (lane, e) in entries.iter().enumerate() {
            for d in 0..3 {
                chunk.small[2 * d][lane] = e.lo[d].low_u16();
                chunk.small[2 * d + 1][lane] = e.hi[d].wrapping_sub(e.lo[d]).low_u16();
            }
            for d in 0..2 {
                chunk.address[2 * d][lane] = e.lo[3 + d];
                chunk.address[2 * d + 1][lane] = e.hi[3 + d].wrapping_sub(e.lo[3 + d]);
            }
            chunk.prec[lane] = e.prec;
            chunk.id[lane] = e.id;
            chunk.group[lane] = e.group;
        }
        chunk
    }
}

/// Bit `i` set when `lo[i] <= key <= lo[i] + span[i]`, computed as `key - lo <= span`
/// (wrapping): one vector subtract, compare and mask extraction per call.
#[inline(always)]
fn within<T: Lane>(key: T, lo: &[T; LANES], span: &[T; LANES]) -> u32 {
    let mut bits = 0;
    for i in 0..LANES {
        bits |= u32::from(key.wrapping_sub(lo[i]) <= span[i]) << i;
    }
    bits
}

/// Bit `i` set when lane `i` of a chunk contains `key`, computed lane by lane (the compiler
/// vectorises it only in part; [`chunk_mask_avx2`] is the explicit vector form).
#[inline(always)]
fn chunk_mask<K: Key>(chunk: &Chunk<K>, key: &[K; DIMS]) -> u32 {
    // The address fields first: they rule out most entries, and when they rule out all
    // eight the ports and protocol are not looked at.
    let (address, small) = (&chunk.address, &chunk.small);
    let mask = within(key[3], &address[0], &address[1]) & within(key[4], &address[2], &address[3]);
    if mask == 0 {
        return 0;
    }
    mask & within(key[1].low_u16(), &small[2], &small[3])
        & within(key[0].low_u16(), &small[0], &small[1])
        & within(key[2].low_u16(), &small[4], &small[5])
}

/// [`chunk_mask`] for IPv4 keys in AVX2 instructions: per field one subtract, one unsigned
/// minimum, one compare and one mask extraction over all eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk_mask_avx2(chunk: &Chunk<u32>, key: &[u32; DIMS]) -> u32 {
    use std::arch::x86_64::*;
    // Rows are read with `setr` of their eight values, which compiles to one unaligned load.
    let row32 = |r: &[u32; LANES]| {
        _mm256_setr_epi32(
            r[0] as i32,
            r[1] as i32,
            r[2] as i32,
            r[3] as i32,
            r[4] as i32,
            r[5] as i32,
            r[6] as i32,
            r[7] as i32,
        )
    };
    let row16 = |r: &[u16; LANES]| {
        _mm_setr_epi16(
            r[0] as i16,
            r[1] as i16,
            r[2] as i16,
            r[3] as i16,
            r[4] as i16,
            r[5] as i16,
            r[6] as i16,
            r[7] as i16,
        )
    };
    let within32 = |k: u32, lo: &[u32; LANES], span: &[u32; LANES]| {
        let d = _mm256_sub_epi32(_mm256_set1_epi32(k as i32), row32(lo));
        _mm256_cmpeq_epi32(_mm256_min_epu32(d, row32(span)), d)
    };
    let within16 = |k: u32, lo: &[u16; LANES], span: &[u16; LANES]| {
        let d = _mm_sub_epi16(_mm_set1_epi16(k as u16 as i16), row16(lo));
        _mm_cmpeq_epi16(_mm_min_epu16(d, row16(span)), d)
    };
    let (address, small) = (&chunk.address, &chunk.small);
    let both = _mm256_and_si256(
        within32(key[3], &address[0], &address[1]),
        within32(key[4], &address[2], &address[3]),
    );
    let mask = _mm256_movemask_ps(_mm256_castsi256_ps(both)) as u32;
    if mask == 0 {
        return 0;
    }
    let rest = _mm_and_si128(
        _mm_and_si128(
            within16(key[1], &small[2], &small[3]),
            within16(key[0], &small[0], &small[1]),
        ),
        within16(key[2], &small[4], &small[5]),
    );
    mask & _mm_movemask_epi8(_mm_packs_epi16(rest, _mm_setzero_si128())) as u32
}

/// The first entry (best precedence) of a leaf's chunks containing `key` whose group check
/// passes, if it beats `bound`; `mask_of` says which lanes of a chunk contain the key.
#[inline(always)]
fn first_match<K: Key>(
    chunks: &[Chunk<K>],
    bound: u64,
    mask_of: &impl Fn(&Chunk<K>) -> u32,
    in_group: &impl Fn(u32) -> bool,
) -> Option<Hit> {
    for chunk in chunks {
        if chunk.prec[0] >= bound {
            return None;
        }
        let mut mask = mask_of(chunk);
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            let group = chunk.group[lane];
            if group == NO_GROUP || in_group(group) {
                let hit = Hit {
                    id: chunk.id[lane],
                    prec: chunk.prec[lane],
                };
                return (hit.prec < bound).then_some(hit);
            }
            mask &= mask - 1;
        }
    }
    None
}

/// What a tree's first build may spend (see `Tree::budget`).
#[derive(Debug, Clone, Copy)]
struct Budget {
    bytes: usize,
    work: usize,
}

impl Budget {
    const NONE: Budget = Budget {
        bytes: usize::MAX,
        work: usize::MAX,
    };
}

/// One decision tree. Node 0 is the root.
#[derive(Debug, Clone)]
struct Tree<K> {
    nodes: Vec<Node<K>>,
    leaves: Vec<Leaf<K>>,
    /// Every leaf's entries laid out for scanning, each leaf's chunks contiguous.
    chunks: Vec<Chunk<K>>,
    /// Chunks no leaf uses any more (left behind by leaves that moved or were replaced).
    spare_chunks: usize,
    /// Whether cuts are chosen to copy few rules rather than to balance the children.
    thrifty: bool,
    /// Leaves at most this long are not split.
    leaf_size: usize,
    /// Bytes of nodes and chunks the first build may use, and entries it may handle
    /// (summed over the nodes it builds, copies included): past either the build gives up
    /// (`over`). Later rebuilds are not bounded: the tree has been chosen by then.
    budget: Budget,
    over: bool,
    /// Master copy of every entry, by rule id.
    by_id: Vec<Vec<Entry<K>>>,
    /// Nodes and leaves orphaned by partial rebuilds.
    garbage: usize,
    /// The deepest leaf's depth: the steps a lookup takes.
    depth: u32,
}

impl<K: Key> Tree<K> {
    /// Builds from scratch; `None` when the nodes and chunks would need more than `budget`
    /// bytes.
    fn build(
        entries: Vec<Entry<K>>,
        thrifty: bool,
        leaf_size: usize,
        budget: Budget,
    ) -> Option<Self> {
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
            chunks: Vec::new(),
            spare_chunks: 0,
            thrifty,
            leaf_size,
            budget,
            over: false,
            by_id,
            garbage: 0,
            depth: 0,
        };
        c.rebuild();
        c.budget = Budget::NONE;
        (!c.over).then_some(c)
    }

    /// Bytes of what a lookup reads: nodes and chunks.
    fn hot_bytes(&self) -> usize {
        self.nodes.len() * size_of::<Node<K>>() + self.chunks.len() * size_of::<Chunk<K>>()
    }

    fn rebuild(&mut self) {
        let mut all: Vec<Entry<K>> = self.by_id.iter().flatten().copied().collect();
        all.sort_by_key(|e| e.prec);
        self.nodes.clear();
        self.leaves.clear();
        self.chunks.clear();
        self.spare_chunks = 0;
        self.garbage = 0;
        self.depth = 0;
        self.nodes.push(Node::leaf(0));
        let root = self.build_node(all, Region::full(), 0, false);
        self.place(0, root);
    }

    /// Stores a node in its slot; a leaf is pointed back at itself.
    fn place(&mut self, slot: usize, mut node: Node<K>) {
        if node.is_leaf() {
            node.child = slot as u32;
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
        self.budget.work = self.budget.work.saturating_sub(entries.len());
        self.over |= self.hot_bytes() > self.budget.bytes || self.budget.work == 0;
        if self.over {
            // The tree will be thrown away: stop building it.
            return Node::leaf(0);
        }
        let mut pruned = pruned;
        if let Some(i) = entries.iter().position(|e| e.covers(&region)) {
            if i + 1 < entries.len() {
                entries.truncate(i + 1);
                pruned = true;
            }
        }
        if entries.len() > self.leaf_size && depth < MAX_DEPTH {
            if let Some(dim) = choose_dimension(&entries, &region, self.thrifty) {
                let cuts = choose_cuts(&entries, &region, dim);
                let arity = cuts.len() + 1;
                let mut parts: Vec<Vec<Entry<K>>> = vec![Vec::new(); arity];
                for e in &entries {
                    let first = cuts.partition_point(|&c| c < e.lo[dim].max(region.lo[dim]));
                    let last = cuts.partition_point(|&c| c < e.hi[dim].min(region.hi[dim]));
                    for part in &mut parts[first..=last] {
                        part.push(*e);
                    }
                }
                if parts.iter().map(Vec::len).sum::<usize>() < arity * entries.len() {
                    drop(entries);
                    let mut node = Node::leaf(0);
                    node.cut[..cuts.len()].copy_from_slice(&cuts);
                    node.child = self.nodes.len() as u32;
                    node.leaf = NO_LEAF;
                    node.dim = dim as u8;
                    node.arity = arity as u8;
                    self.nodes.extend(std::iter::repeat_n(Node::leaf(0), arity));
                    let children: Vec<_> = node.children(&region).collect();
                    for ((slot, child_region), part) in children.into_iter().zip(parts) {
                        let child = self.build_node(part, child_region, depth + 1, pruned);
                        self.place(slot, child);
                    }
                    return node;
                }
            }
        }
        self.depth = self.depth.max(depth);
        self.leaves.push(Leaf {
            entries,
            pruned,
            chunk: 0,
            capacity: 0,
        });
        let mut node = Node::leaf((self.leaves.len() - 1) as u32);
        self.lay_out(&mut node);
        node
    }

    /// Writes a leaf's entries into the chunk arena (in its place when they fit, else at
    /// the end) and points its node at them.
    fn lay_out(&mut self, node: &mut Node<K>) {
        let leaf = &mut self.leaves[node.leaf as usize];
        let needed = leaf.entries.len().div_ceil(LANES) as u32;
        if needed > leaf.capacity {
            self.spare_chunks += leaf.capacity as usize;
            leaf.chunk = self.chunks.len() as u32;
            leaf.capacity = needed;
            self.chunks
                .resize((leaf.chunk + needed) as usize, Chunk::EMPTY);
        }
        for (i, part) in leaf.entries.chunks(LANES).enumerate() {
            self.chunks[leaf.chunk as usize + i] = Chunk::new(part);
        }
        node.chunk = leaf.chunk;
        node.chunks = needed;
        node.first_prec = leaf.entries.first().map_or(u64::MAX, |e| e.prec);
    }

    /// Re-lays out the leaf at node `n` after its entries changed.
    fn refresh(&mut self, n: usize) {
        let mut node = self.nodes[n];
        self.lay_out(&mut node);
        self.nodes[n] = node;
    }

    /// The chunks of the leaf at node `n`.
    #[inline(always)]
    fn leaf_chunks(&self, node: &Node<K>) -> &[Chunk<K>] {
        let start = node.chunk as usize;
        &self.chunks[start..start + node.chunks as usize]
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
            for (slot, child) in node.children(&region) {
                if e.lo[dim] <= child.hi[dim] && child.lo[dim] <= e.hi[dim] {
                    stack.push((slot, child, depth + 1));
                }
            }
        }
        found
    }

    /// Adds entries (all of one new rule id).
    fn insert(&mut self, entries: &[Entry<K>]) {
        let rebuild_at = self.leaf_size * REBUILD_FACTOR;
        for e in entries {
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
                if leaf.entries.len() > rebuild_at {
                    let entries = std::mem::take(&mut leaf.entries);
                    let pruned = leaf.pruned;
                    self.replace(n, entries, region, depth, pruned);
                } else {
                    self.refresh(n);
                }
            }
        }
        self.collect_garbage();
    }

    /// Removes every entry of a rule id; returns how many there were.
    fn remove(&mut self, id: u32) -> usize {
        let Some(entries) = self.by_id.get_mut(id as usize).map(std::mem::take) else {
            return 0;
        };
        for e in &entries {
            for (n, region, depth) in self.leaves_overlapping(e) {
                let leaf = &mut self.leaves[self.nodes[n].leaf as usize];
                let before = leaf.entries.len();
                leaf.entries.retain(|x| x.id != id);
                let (removed, pruned) = (leaf.entries.len() < before, leaf.pruned);
                if removed {
                    self.refresh(n);
                }
                if pruned && removed {
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
        entries.len()
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
        let old = &mut self.leaves[self.nodes[n].leaf as usize];
        self.spare_chunks += old.capacity as usize;
        old.capacity = 0;
        old.entries = Vec::new();
        let node = self.build_node(entries, region, depth, pruned);
        self.place(n, node);
    }

    fn collect_garbage(&mut self) {
        if (self.garbage > 64 && self.garbage * 2 > self.leaves.len())
            || (self.spare_chunks > 64 && self.spare_chunks * 2 > self.chunks.len())
        {
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
                .map(|l| l.entries.capacity() * size_of::<Entry<K>>())
                .sum::<usize>()
            + self.chunks.capacity() * size_of::<Chunk<K>>()
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
                stack
                    .extend((0..usize::from(node.arity)).map(|i| (node.child as usize + i, d + 1)));
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

/// The classifier: the trees of [`TREES`] categories, searched in turn, skipping a leaf whose
/// best entry cannot beat the match found so far.
#[derive(Debug, Clone)]
pub(crate) struct Classifier<K> {
    trees: [Tree<K>; TREES],
    /// Whether every rule is in the first tree (see [`Classifier::build`]).
    single: bool,
    /// Entries when the layout was last chosen: it is chosen again once that doubles or
    /// halves, since a set that grew one rule at a time from empty (as groups do) may
    /// suit the other layout by then.
    chosen_at: usize,
    /// Entries held now.
    entries: usize,
}

impl<K: Key> Default for Classifier<K> {
    fn default() -> Self {
        Classifier::build(Vec::new())
    }
}

/// Entries a tree holds (its master list).
fn entries_of<K: Key>(tree: &Tree<K>) -> usize {
    tree.by_id.iter().map(Vec::len).sum()
}

/// Whether a range covers more than half the bits of its key: `0.0.0.0/15` is wide, a /16
/// is narrow (for IPv6 the line is at /64).
fn wide<K: Key>(lo: K, hi: K) -> bool {
    K::wide(lo, hi)
}

/// The category of rules wide in both addresses: their tree cuts to copy few rules.
const BOTH_WIDE: usize = 3;

/// 0: both addresses narrow; 1: local wide; 2: peer wide; [`BOTH_WIDE`].
fn category<K: Key>(e: &Entry<K>) -> usize {
    usize::from(wide(e.lo[3], e.hi[3])) * 2 + usize::from(wide(e.lo[4], e.hi[4]))
}

impl<K: Key> Classifier<K> {
    /// Builds from scratch.
    ///
    /// Rules are spread over four trees by which addresses they leave wide, unless one tree
    /// of short leaves holding them all fits in a few times those trees' bytes (and in a
    /// core's cache): then a lookup walks one tree and scans one chunk instead of four
    /// leaves, which is what the sets of mostly narrow rules (the ACL sets) gain from. The
    /// single tree's build gives up as soon as it outgrows that budget, so the sets it does
    /// not suit (wide rules copied into every leaf) pay little for the attempt.
    pub(super) fn build(entries: Vec<Entry<K>>) -> Self {
        Self::build_with(entries, SINGLE_GROWTH)
    }

    /// [`Classifier::build`] with the single tree allowed `growth` times the four trees'
    /// bytes (0: always four trees).
    fn build_with(entries: Vec<Entry<K>>, growth: usize) -> Self {
        let mut parts: Vec<Vec<Entry<K>>> = vec![Vec::new(); TREES];
        for e in &entries {
            parts[category(e)].push(*e);
        }
        let mut parts = parts.into_iter().enumerate().map(|(c, part)| {
            let thrifty = c == BOTH_WIDE;
            let leaf = if thrifty { 2 * BINTH } else { BINTH };
            Tree::build(part, thrifty, leaf, Budget::NONE).expect("no budget")
        });
        let trees: [Tree<K>; TREES] =
            std::array::from_fn(|_| parts.next().expect("one part per tree"));
        let four: usize = trees.iter().map(Tree::hot_bytes).sum();
        // The work allowed is 16 handled entries per entry (copies included): the sets that
        // fit used at most 6 (acl5_10k), while one that copies wide rules into every leaf
        // stops after a few levels (fw4_10k: 100 ms to find it does not fit without this
        // bound, against 5 ms for the four trees).
        let budget = Budget {
            bytes: growth.saturating_mul(four).min(SINGLE_BYTES),
            work: growth
                .saturating_mul(2)
                .saturating_mul(entries.len().max(1)),
        };
        match Tree::build(entries, false, SINGLE_BINTH, budget) {
            Some(single) => {
                let chosen_at = entries_of(&single);
                let mut single = Some(single);
                Classifier {
                    trees: std::array::from_fn(|_| {
                        single.take().unwrap_or_else(|| {
                            Tree::build(Vec::new(), false, BINTH, Budget::NONE).expect("empty")
                        })
                    }),
                    single: true,
                    chosen_at,
                    entries: chosen_at,
                }
            }
            None => {
                let n = trees.iter().map(entries_of).sum();
                Classifier {
                    trees,
                    single: false,
                    chosen_at: n,
                    entries: n,
                }
            }
        }
    }

    /// The best-precedence entry containing `key` whose group check (if any) passes.
    ///
    /// Each tree is walked to its own depth without testing for leaves (they point back at
    /// themselves); the walks do not depend on each other, so the processor overlaps them.
    /// The leaves are then scanned tree by tree.
    #[inline]
    pub(super) fn lookup(&self, key: &[K; DIMS], in_group: impl Fn(u32) -> bool) -> Option<Hit> {
        self.lookup_with(key, &|chunk| chunk_mask(chunk, key), &in_group)
    }

    #[inline(always)]
    fn lookup_with(
        &self,
        key: &[K; DIMS],
        mask_of: &impl Fn(&Chunk<K>) -> u32,
        in_group: &impl Fn(u32) -> bool,
    ) -> Option<Hit> {
        // Each tree walks its own depth; the walks are independent, so the processor
        // overlaps them.
        let mut at = [0u32; TREES];
        for (i, tree) in at.iter_mut().zip(self.live()) {
            for _ in 0..tree.depth {
                *i = tree.nodes[*i as usize].next(key);
            }
        }
        self.scan_leaves(&at, mask_of, in_group)
    }

    /// The best hit among the leaves a key reached (`at`, one node per tree).
    ///
    /// Scans the leaves tree by tree: once a match is found, a leaf whose first entry
    /// cannot beat it is skipped whole. (Sorting the four leaves by their first entry
    /// first skips more, but costs more than it saves: acl1_1k 74 → 60 ns without it;
    /// ordering the trees by their best precedence instead was 2 ns slower than this.)
    #[inline(always)]
    fn scan_leaves(
        &self,
        at: &[u32; TREES],
        mask_of: &impl Fn(&Chunk<K>) -> u32,
        in_group: &impl Fn(u32) -> bool,
    ) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        for (tree, &at) in self.live().iter().zip(at) {
            let node = &tree.nodes[at as usize];
            let bound = best.map_or(u64::MAX, |b| b.prec);
            if node.first_prec >= bound {
                continue;
            }
            if let Some(hit) = first_match(tree.leaf_chunks(node), bound, mask_of, in_group) {
                best = Some(hit);
            }
        }
        best
    }

    /// [`Classifier::lookup`] of [`BATCH`] keys at once, level by level: the walks of
    /// different keys do not depend on each other, so their node loads are in flight
    /// together instead of one after another (the sets whose trees outgrow the core's
    /// caches gain most). `in_group(k, g)` is the group check for key `k`.
    #[inline(always)]
    fn lookup_batch_with(
        &self,
        keys: &[[K; DIMS]; BATCH],
        mask_of: &impl Fn(&Chunk<K>, &[K; DIMS]) -> u32,
        in_group: &impl Fn(usize, u32) -> bool,
        out: &mut [Option<Hit>; BATCH],
    ) {
        let mut at = [[0u32; TREES]; BATCH];
        for (t, tree) in self.live().iter().enumerate() {
            for _ in 0..tree.depth {
                for (at, key) in at.iter_mut().zip(keys) {
                    at[t] = tree.nodes[at[t] as usize].next(key);
                }
            }
        }
        // Ask for every leaf's first chunk before scanning any, so that the scans find them
        // near instead of waiting for each in turn.
        #[cfg(target_arch = "x86_64")]
        for at in &at {
            for (tree, &n) in self.live().iter().zip(at) {
                let node = &tree.nodes[n as usize];
                if let Some(chunk) = tree.chunks.get(node.chunk as usize) {
                    let p = (chunk as *const Chunk<K>).cast::<i8>();
                    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                    for line in 0..3 {
                        // SAFETY: a prefetch is a hint that never faults, and SSE is part
                        // of every x86-64 processor.
                        #[allow(unsafe_code)]
                        unsafe {
                            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * line))
                        };
                    }
                }
            }
        }
        for (k, (hit, key)) in out.iter_mut().zip(keys).enumerate() {
            *hit = self.scan_leaves(&at[k], &|c| mask_of(c, key), &|g| in_group(k, g));
        }
    }

    /// [`Classifier::lookup`] of [`BATCH`] keys (any family, scanned lane by lane).
    #[inline]
    pub(super) fn lookup_batch(
        &self,
        keys: &[[K; DIMS]; BATCH],
        in_group: impl Fn(usize, u32) -> bool,
        out: &mut [Option<Hit>; BATCH],
    ) {
        self.lookup_batch_with(keys, &|c, k| chunk_mask(c, k), &in_group, out);
    }

    /// The trees a lookup visits: only the first when it holds every rule.
    #[inline(always)]
    fn live(&self) -> &[Tree<K>] {
        &self.trees[..if self.single { 1 } else { TREES }]
    }

    /// Adds entries (all of one new rule id).
    pub(super) fn insert(&mut self, entries: &[Entry<K>]) {
        for e in entries {
            let tree = if self.single { 0 } else { category(e) };
            self.trees[tree].insert(std::slice::from_ref(e));
        }
        self.entries += entries.len();
        self.rechoose();
    }

    /// Removes every entry of a rule id.
    pub(super) fn remove(&mut self, id: u32) {
        for t in &mut self.trees {
            self.entries -= t.remove(id);
        }
        self.rechoose();
    }

    /// Builds again, choosing the layout afresh, when the entries doubled or halved since
    /// it was chosen (amortised: each entry pays for a constant share of one build), or at
    /// once when the single tree outgrew the cache it was chosen to fit.
    fn rechoose(&mut self) {
        let n = self.entries;
        let drifted = n > 2 * self.chosen_at.max(4) || 2 * n < self.chosen_at;
        if drifted || (self.single && self.trees[0].hot_bytes() > SINGLE_BYTES) {
            let all = self
                .trees
                .iter()
                .flat_map(|t| t.by_id.iter().flatten().copied());
            *self = Classifier::build(all.collect());
        }
    }

    /// Bytes held by the structure.
    pub(super) fn memory_bytes(&self) -> usize {
        self.trees.iter().map(Tree::memory_bytes).sum()
    }

    /// (tree nodes, leaves, longest leaf, deepest level) over all trees.
    pub(super) fn shape(&self) -> (usize, usize, usize, u32) {
        self.trees
            .iter()
            .map(Tree::shape)
            .fold((0, 0, 0, 0), |a, s| {
                (a.0 + s.0, a.1 + s.1, a.2.max(s.2), a.3.max(s.3))
            })
    }
}

impl Classifier<u32> {
    /// [`Classifier::lookup`] for IPv4, with the leaf scan in AVX2 instructions when the
    /// processor has them (checked once per call; the answer is cached by the standard
    /// library): 15–30 % faster on the ClassBench sets than what the compiler makes of the
    /// lane-by-lane form.
    #[inline]
    pub(super) fn lookup_v4(
        &self,
        key: &[u32; DIMS],
        in_group: impl Fn(u32) -> bool,
    ) -> Option<Hit> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the processor has just been seen to have these features.
            #[allow(unsafe_code)]
            return unsafe { self.lookup_avx2(key, &in_group) };
        }
        self.lookup(key, in_group)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    fn lookup_avx2(&self, key: &[u32; DIMS], in_group: &impl Fn(u32) -> bool) -> Option<Hit> {
        self.lookup_with(key, &|chunk| chunk_mask_avx2(chunk, key), in_group)
    }

    /// [`Classifier::lookup_v4`] of [`BATCH`] keys at once (see `lookup_batch_with`).
    #[inline]
    pub(super) fn lookup_batch_v4(
        &self,
        keys: &[[u32; DIMS]; BATCH],
        in_group: impl Fn(usize, u32) -> bool,
        out: &mut [Option<Hit>; BATCH],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the processor has just been seen to have these features.
            #[allow(unsafe_code)]
            return unsafe { self.lookup_batch_avx2(keys, &in_group, out) };
        }
        self.lookup_batch(keys, in_group, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    fn lookup_batch_avx2(
        &self,
        keys: &[[u32; DIMS]; BATCH],
        in_group: &impl Fn(usize, u32) -> bool,
        out: &mut [Option<Hit>; BATCH],
    ) {
        self.lookup_batch_with(keys, &|c, k| chunk_mask_avx2(c, k), in_group, out);
    }
}

/// The rule edges inside the region along one field: where a child interval could start.
fn edges<K: Key>(entries: &[Entry<K>], region: &Region<K>, dim: usize, points: &mut Vec<K>) {
    points.clear();
    for e in entries {
        if e.lo[dim] > region.lo[dim] {
            points.push(e.lo[dim]);
        }
        if e.hi[dim] < region.hi[dim] {
            points.push(e.hi[dim].succ());
        }
    }
}

/// Picks the field to cut: per field, a binary cut at the median rule edge; the field whose
/// larger side is smallest wins (ties: less replication), or, for a `thrifty` tree, the one
/// whose two sides plus the larger side hold fewest rules (copies weigh as much as balance).
fn choose_dimension<K: Key>(
    entries: &[Entry<K>],
    region: &Region<K>,
    thrifty: bool,
) -> Option<usize> {
    let mut best: Option<((usize, usize), usize)> = None;
    let mut points = Vec::with_capacity(entries.len() * 2);
    for dim in 0..DIMS {
        edges(entries, region, dim, &mut points);
        if points.is_empty() {
            continue;
        }
        let mid = points.len() / 2;
        let thr = *points.select_nth_unstable(mid).1;
        let left = entries.iter().filter(|e| e.lo[dim] < thr).count();
        let right = entries.iter().filter(|e| e.hi[dim] >= thr).count();
        let cost = if thrifty {
            (left + right + left.max(right), 0)
        } else {
            (left.max(right), left + right)
        };
        if best.is_none_or(|(c, _)| cost < c) {
            best = Some((cost, dim));
        }
    }
    best.map(|(_, dim)| dim)
}

/// Up to `FANOUT - 1` cuts along `dim` at evenly spaced quantiles of the rule edges, so the
/// children get about as many rules each. A cut is the last key of an interval (an edge
/// minus one).
fn choose_cuts<K: Key>(entries: &[Entry<K>], region: &Region<K>, dim: usize) -> Vec<K> {
    let mut points = Vec::with_capacity(entries.len() * 2);
    edges(entries, region, dim, &mut points);
    points.sort_unstable();
    let mut cuts: Vec<K> = (1..FANOUT)
        .map(|i| points[i * points.len() / FANOUT].pred())
        .collect();
    cuts.dedup();
    cuts
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
        let mut layouts = [false; 2];
        for round in 0..600u32 {
            layouts[usize::from(c.single)] = true;
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
                let want = scan(&live, &key);
                let got = c.lookup(&key, |_| true).map(|h| h.id);
                assert_eq!(got, want, "round {round} key {key:?}");
                let got = c.lookup_v4(&key, |_| true).map(|h| h.id);
                assert_eq!(got, want, "vector scan, round {round} key {key:?}");
            }
        }
        // The set grew from empty in the single tree and outgrew it.
        assert_eq!(layouts, [true, true]);
        assert_eq!(c.entries, c.trees.iter().map(entries_of).sum::<usize>());
        // Both layouts, built from scratch.
        for growth in [0, SINGLE_GROWTH, usize::MAX] {
            let rebuilt = Classifier::build_with(live.clone(), growth);
            assert!(growth != 0 || !rebuilt.single);
            for _ in 0..500 {
                let key = [next(70), next(70), next(70), next(70), next(70)];
                let want = scan(&live, &key);
                assert_eq!(rebuilt.lookup(&key, |_| true).map(|h| h.id), want);
                assert_eq!(rebuilt.lookup_v4(&key, |_| true).map(|h| h.id), want);
            }
        }
    }
}
