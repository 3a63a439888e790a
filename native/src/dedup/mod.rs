//! The ids a partition counted within its duplicate horizon, exactly, in memory that does not grow with them.
//!
//! Recent ids are held in a map; every `seal_at` of them are sorted into a run on local disk (`run.rs`), found
//! again through a Bloom filter and a sparse index. A filter's false positive costs one block read, so the answer
//! is exact. When `FANOUT` runs of one level pile up they are merged into one of the next level, dropping ids
//! past the horizon, so a lookup probes a few filters. The directory is a cache: restore rebuilds it.
//! See docs/late-events.md.

mod bloom;
pub mod key;
pub mod measure;
mod run;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs;
use std::io;
use std::path::PathBuf;

use rustc_hash::FxHashMap;

use key::{encode, Key};
pub use run::{pack, unpack};
use run::{Entries, Run};

/// Runs of one level merged at once.
const FANOUT: usize = 4;
/// Below this many recent ids, pruning them is not worth a pass over the map.
const PRUNE_MIN: usize = 4096;

pub struct SeenIds {
    dir: PathBuf,
    recent: FxHashMap<Key, i64>,
    runs: Vec<Run>, // oldest first; levels never rise from oldest to newest
    seal_at: usize,
    prune_at: usize,
    next_run: u64,
}

impl SeenIds {
    /// A store whose runs live in `dir` (emptied of earlier runs first).
    pub fn new(dir: PathBuf, seal_at: usize) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "ids") {
                fs::remove_file(path)?;
            }
        }
        Ok(SeenIds {
            dir,
            recent: FxHashMap::default(),
            runs: Vec::new(),
            seal_at: seal_at.max(1),
            prune_at: PRUNE_MIN,
            next_run: 0,
        })
    }

    /// The event time `id` was last remembered with, if it is held (it may be past the caller's horizon).
    pub fn get(&self, id: &str) -> io::Result<Option<i64>> {
        self.get_key(&encode(id))
    }

    pub fn get_key(&self, key: &Key) -> io::Result<Option<i64>> {
        if let Some(&ts) = self.recent.get(key) {
            return Ok(Some(ts));
        }
        for run in self.runs.iter().rev() {
            if let Some(ts) = run.get(key)? {
                return Ok(Some(ts));
            }
        }
        Ok(None)
    }

    /// Remember `id` with event time `ts`; ids before `horizon` may be forgotten from now on.
    pub fn insert(&mut self, id: &str, ts: i64, horizon: i64) -> io::Result<()> {
        self.insert_key(encode(id), ts, horizon)
    }

    /// Recent ids past the horizon are dropped whenever the map has doubled since it was last pruned (a backlog
    /// read between flushes, which expire too, would otherwise hold every id it read); what is left is sealed
    /// into a run once there are `seal_at` of them.
    pub fn insert_key(&mut self, key: Key, ts: i64, horizon: i64) -> io::Result<()> {
        self.recent.insert(key, ts);
        if self.recent.len() > self.prune_at {
            self.recent.retain(|_, t| *t >= horizon);
            self.prune_at = (2 * self.recent.len()).max(PRUNE_MIN);
        }
        if self.recent.len() >= self.seal_at {
            self.seal(horizon)?;
            self.prune_at = PRUNE_MIN;
        }
        Ok(())
    }

    /// A store holding `ids` (id, event time; of an id given twice, the later counts), as restore builds it:
    /// through the same recent map, seals and merges as live inserts, so its memory stays bounded too.
    pub fn restore(dir: PathBuf, seal_at: usize, ids: impl Iterator<Item = (Key, i64)>) -> io::Result<Self> {
        let mut store = SeenIds::new(dir, seal_at)?;
        for (key, ts) in ids {
            store.insert_key(key, ts, i64::MIN)?;
        }
        Ok(store)
    }

    /// Forget what is past `horizon` where that is free: recent ids, and whole runs with nothing newer.
    pub fn expire(&mut self, horizon: i64) -> io::Result<()> {
        self.recent.retain(|_, ts| *ts >= horizon);
        let (gone, kept): (Vec<Run>, Vec<Run>) = self.runs.drain(..).partition(|r| r.max_ts < horizon);
        self.runs = kept;
        gone.into_iter().try_for_each(Run::delete)
    }

    /// Ids held (some perhaps past the horizon, until their run is merged or expires).
    pub fn len(&self) -> usize {
        self.recent.len() + self.runs.iter().map(|r| r.len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Bytes on local disk.
    pub fn disk_bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.disk_bytes()).sum()
    }

    /// Memory held: the recent map and each run's filter and index.
    pub fn memory_bytes(&self) -> usize {
        let recent = self.recent.capacity() * (std::mem::size_of::<(Key, i64)>() + 1);
        recent + self.runs.iter().map(Run::memory_bytes).sum::<usize>()
    }

    fn path(&mut self) -> PathBuf {
        self.next_run += 1;
        self.dir.join(format!("run-{:08}.ids", self.next_run))
    }

    fn seal(&mut self, horizon: i64) -> io::Result<()> {
        let mut entries: Vec<(Key, i64)> = self.recent.drain().filter(|(_, ts)| *ts >= horizon).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let n = entries.len();
        let path = self.path();
        self.runs.push(Run::write(path, entries.into_iter(), n, 0)?);
        self.compact(horizon)
    }

    /// Merge the newest `FANOUT` runs while they share a level.
    fn compact(&mut self, horizon: i64) -> io::Result<()> {
        while self.runs.len() >= FANOUT {
            let tail = &self.runs[self.runs.len() - FANOUT..];
            let level = tail[0].level;
            if tail.iter().any(|r| r.level != level) {
                break;
            }
            let merging: Vec<Run> = self.runs.split_off(self.runs.len() - FANOUT);
            let capacity = merging.iter().map(|r| r.len).sum();
            let sources = merging.iter().map(Run::entries).collect::<io::Result<Vec<_>>>()?;
            let path = self.path();
            let merged = Merge::new(sources)?;
            let mut failed = None;
            let entries =
                merged.filter_map(|e| e.map_err(|err| failed = Some(err)).ok()).filter(|(_, ts)| *ts >= horizon);
            let run = Run::write(path, entries, capacity, level + 1)?;
            if let Some(err) = failed {
                return Err(err);
            }
            merging.into_iter().try_for_each(Run::delete)?;
            self.runs.push(run);
        }
        Ok(())
    }
}

static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A directory of its own for one store, under the system's temporary directory. Those a killed process left
/// there (its pid gone) are removed first.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let base = std::env::temp_dir();
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("pulse-ids-").and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
            if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    base.join(format!("pulse-ids-{}-{tag}-{n}", std::process::id()))
}

impl Drop for SeenIds {
    /// The files are a cache of this store alone: they go with it.
    fn drop(&mut self) {
        for run in self.runs.drain(..) {
            let _ = run.delete();
        }
        let _ = fs::remove_dir(&self.dir); // only if nothing else is in it
    }
}

/// Runs' entries merged in key order; of one key held by several runs, the newest run's entry.
struct Merge {
    sources: Vec<Entries>, // oldest first
    heads: BinaryHeap<Reverse<(Key, Reverse<usize>, i64)>>,
}

impl Merge {
    fn new(mut sources: Vec<Entries>) -> io::Result<Self> {
        let mut heads = BinaryHeap::new();
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some(entry) = source.next() {
                let (key, ts) = entry?;
                heads.push(Reverse((key, Reverse(i), ts)));
            }
        }
        Ok(Merge { sources, heads })
    }

    fn advance(&mut self, i: usize) -> io::Result<()> {
        if let Some(entry) = self.sources[i].next() {
            let (key, ts) = entry?;
            self.heads.push(Reverse((key, Reverse(i), ts)));
        }
        Ok(())
    }
}

impl Iterator for Merge {
    type Item = io::Result<(Key, i64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((key, Reverse(i), ts)) = self.heads.pop()?;
        if let Err(e) = self.advance(i) {
            return Some(Err(e));
        }
        // the newest run comes first for equal keys (Reverse(i) orders higher i first); drop the older copies
        while self.heads.peek().is_some_and(|Reverse((k, _, _))| *k == key) {
            let Reverse((_, Reverse(j), _)) = self.heads.pop().expect("peeked");
            if let Err(e) = self.advance(j) {
                return Some(Err(e));
            }
        }
        Some(Ok((key, ts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pulse-seen-{name}-{}", std::process::id()))
    }

    /// Random ids (UUIDs and text, many repeated), a rising horizon: every answer equals a plain map's, with
    /// the store sealing and merging runs all along.
    #[test]
    fn answers_as_a_map_does_through_seals_merges_and_expiry() {
        let path = dir("map");
        let mut store = SeenIds::new(path.clone(), 97).unwrap();
        let mut reference: HashMap<String, i64> = HashMap::new();
        let mut rng = Rng(7);
        let horizon_ms = 5_000;
        for step in 0..40_000i64 {
            let n = rng.next() % 9_000;
            let id = if n.is_multiple_of(3) {
                format!("{:08x}-0000-7000-8000-{:012x}", n, n * 31)
            } else {
                format!("id-{n}")
            };
            let ts = step - (rng.next() % 400) as i64;
            let horizon = step - horizon_ms;
            let held = store.get(&id).unwrap().filter(|&t| t >= horizon);
            let want = reference.get(&id).copied().filter(|&t| t >= horizon);
            assert_eq!(held, want, "{id} at step {step}");
            if want.is_none() {
                store.insert(&id, ts, horizon).unwrap();
                reference.insert(id, ts);
            }
            if step % 1_000 == 0 {
                store.expire(horizon).unwrap();
            }
        }
        assert!(store.runs() >= 2 && store.runs() < 20, "{} runs", store.runs());
        // ids past the horizon are gone, not kept: the store follows the ids within it
        assert!(store.len() < 2 * 9_000, "{} held", store.len());
        fs::remove_dir_all(path).unwrap();
    }

    /// Restore feeds the logged ids through the live path (an id logged twice keeps its later time): it answers
    /// as the store it replaces, and goes on sealing and merging after it.
    #[test]
    fn a_restored_store_answers_as_the_one_it_replaces() {
        let path = dir("restore");
        let logged: Vec<(String, i64)> = (0..5_000).map(|i| (format!("id-{}", i % 4_000), i)).collect();
        let mut store = SeenIds::restore(path.clone(), 64, logged.iter().map(|(id, ts)| (encode(id), *ts))).unwrap();
        assert!(store.runs() >= 1);
        assert_eq!(store.get("id-10").unwrap(), Some(4_010)); // logged at 10 and, past the horizon, at 4,010
        assert_eq!(store.get("id-3999").unwrap(), Some(3_999));
        assert_eq!(store.get("id-4000").unwrap(), None);
        for i in 4_000..6_000 {
            store.insert(&format!("id-{i}"), 10_000 + i, 0).unwrap();
        }
        assert!((4_000..6_000).all(|i| store.get(&format!("id-{i}")).unwrap() == Some(10_000 + i)));
        assert_eq!(store.get("id-10").unwrap(), Some(4_010));
        store.expire(5_000).unwrap(); // what is before 5,000 is past the horizon now: gone, or never answered
        assert!(store.get("id-10").unwrap().is_none_or(|ts| ts < 5_000));
        assert_eq!(store.get("id-5999").unwrap(), Some(15_999));
        fs::remove_dir_all(path).unwrap();
    }
}
