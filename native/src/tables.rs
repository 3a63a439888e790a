//! The state's building blocks: interned names, counts per name, rows of counts and revenue, item shards, event
//! id keys, and the partitioning rules the state must agree with.

use crate::change::Change;
use rustc_hash::FxHashMap;
use std::sync::Arc;

pub const ITEM_SHARDS: usize = 32;
/// Item rows per document and per changelog record are cut into pages of about this many bytes: far below the
/// topics' 1 MB message limit however many items a partition sees in a window.
pub const PAGE_BYTES: usize = 256 * 1024;
/// Stable across processes and versions: CRC-32 of the item id (as `pulse.aggregate.docs.item_shard`).
pub fn item_shard(item: &str) -> usize {
    crc32fast::hash(item.as_bytes()) as usize % ITEM_SHARDS
}

/// Kafka's `Utils.murmur2` (Java's default partitioner for keyed records), as `pulse.generate.partitioner`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// `toPositive(murmur2(user)) % partitions`: the partition a Java client keys a user's events to.
pub fn user_partition(user: &str, partitions: u32) -> u32 {
    (murmur2(user.as_bytes()) & 0x7fff_ffff) % partitions.max(1)
}

/// Strings interned to dense ids; the id is an index into `list`.
#[derive(Default)]
pub struct Names {
    pub list: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
}

impl Names {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.list.len() as u32;
        let rc: Arc<str> = Arc::from(s);
        self.list.push(rc.clone());
        self.ids.insert(rc, id);
        id
    }
    pub fn name(&self, id: u32) -> &str {
        &self.list[id as usize]
    }
}

/// An event id as a key of the duplicate set. Ids of up to 15 bytes (the generator's are about a dozen) are packed
/// with their length into two integers, so remembering one allocates nothing (with a string per event, accepting
/// 300k events took about 15 % longer, interleaved in one process); longer ids keep their text. Exact: two ids
/// make equal keys only if they are equal.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum EventKey {
    Short(u64, u64),
    Long(Box<str>),
}

impl EventKey {
    pub fn new(id: &str) -> Self {
        let b = id.as_bytes();
        if b.len() > 15 {
            return EventKey::Long(id.into());
        }
        let mut packed = [0u8; 16];
        packed[..b.len()].copy_from_slice(b);
        packed[15] = b.len() as u8;
        let (lo, hi) = packed.split_at(8);
        EventKey::Short(
            u64::from_le_bytes(lo.try_into().expect("8 bytes")),
            u64::from_le_bytes(hi.try_into().expect("8 bytes")),
        )
    }
}

/// Counts per interned name; a handful of entries, so a vector beats a map, and up to four of them live inline
/// (no pointer to follow per event: accepting events 6-10 % faster, interleaved in one process; the memory
/// benchmark's peak for 1.27M users rose from 1,605 to 1,738 MiB).
pub type Counts = smallvec::SmallVec<[(u32, u64); 4]>;

pub fn bump(counts: &mut Counts, name: u32, n: u64) {
    for entry in counts.iter_mut() {
        if entry.0 == name {
            entry.1 += n;
            return;
        }
    }
    counts.push((name, n));
}

/// Counts per event type plus revenue, for one item or category.
#[derive(Default, Clone)]
pub struct Row {
    pub counts: Counts,
    pub cents: i64,
    pub purchases: u64,
}

impl Row {
    /// One event of type `etype`; `paid`: the cents of an ok purchase.
    pub fn add(&mut self, etype: u32, paid: Option<i64>) {
        bump(&mut self.counts, etype, 1);
        if let Some(amount) = paid {
            self.cents += amount;
            self.purchases += 1;
        }
    }
}

/// Item rows split into the 32 shards that are each one changelog record and one document (or a few pages of
/// each, past `PAGE_BYTES`).
pub struct Shards {
    pub maps: Vec<FxHashMap<u32, Row>>,
    pub change: Change,                   // a piece per shard
    pub logged_pages: [u16; ITEM_SHARDS], // changelog pages written per shard (to tombstone them all)
    pub published_at: i64,                // wall clock of their last publication (0: not since the start)
}

impl Default for Shards {
    fn default() -> Self {
        Shards {
            maps: (0..ITEM_SHARDS).map(|_| FxHashMap::default()).collect(),
            change: Change::default(),
            logged_pages: [0; ITEM_SHARDS],
            published_at: 0,
        }
    }
}

impl Shards {
    pub fn row(&mut self, shard: usize, item: u32) -> &mut Row {
        self.change.touch_piece(shard);
        self.maps[shard].entry(item).or_default()
    }
    /// The non-empty shards among `mask` (a bit per shard), in order.
    pub fn shards(&self, mask: u32) -> impl Iterator<Item = usize> + '_ {
        (0..ITEM_SHARDS).filter(move |&s| mask & (1 << s) != 0 && !self.maps[s].is_empty())
    }
    /// Once a flush is handed to its transaction, which published the pending shards (at wall clock `at`) or not
    /// (`None`).
    pub fn flushed(&mut self, published: Option<i64>) {
        self.change.flushed(published.is_some());
        if let Some(at) = published {
            self.published_at = at;
        }
    }
}
