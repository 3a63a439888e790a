//! A sealed run: ids sorted by key with the event time each was first counted at, in a file of its own, found
//! through a Bloom filter and a sparse index held in memory.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::bloom::Bloom;
use super::key::{hash, Key};

/// Entries per block: one block is read to confirm a filter hit.
const BLOCK: usize = 64;

pub struct Run {
    path: PathBuf,
    file: File,
    index: Vec<(Key, u64)>, // the first key of every block, and where the block starts
    end: u64,
    bloom: Bloom,
    pub len: usize,
    pub max_ts: i64,
    pub level: u32,
}

fn put(out: &mut impl Write, key: &[u8], ts: i64) -> io::Result<u64> {
    out.write_all(&(key.len() as u16).to_le_bytes())?;
    out.write_all(key)?;
    out.write_all(&ts.to_le_bytes())?;
    Ok(2 + key.len() as u64 + 8)
}

/// Entries in the run's byte layout (the changelog's id records use it too).
pub fn pack(entries: &[(Key, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|(k, _)| k.len() + 10).sum());
    for (key, ts) in entries {
        put(&mut out, key, *ts).expect("writing to memory");
    }
    out
}

/// The entries of `pack`'s bytes (None: not such bytes).
pub fn unpack(mut bytes: &[u8]) -> Option<Vec<(Key, i64)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (key, ts, used) = take(bytes)?;
        out.push((Key::from_slice(key), ts));
        bytes = &bytes[used..];
    }
    Some(out)
}

/// The next entry of a run's bytes, and how many bytes it took (None at the end).
fn take(bytes: &[u8]) -> Option<(&[u8], i64, usize)> {
    let n = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let key = bytes.get(2..2 + n)?;
    let ts = i64::from_le_bytes(bytes.get(2 + n..10 + n)?.try_into().ok()?);
    Some((key, ts, 10 + n))
}

impl Run {
    /// Write `entries` (sorted by key, each key once; at most `capacity` of them) to `path`.
    pub fn write(
        path: PathBuf,
        entries: impl Iterator<Item = (Key, i64)>,
        capacity: usize,
        level: u32,
    ) -> io::Result<Run> {
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
        let mut bloom = Bloom::with_capacity(capacity);
        let (mut index, mut offset, mut len, mut max_ts) = (Vec::new(), 0u64, 0usize, i64::MIN);
        for (key, ts) in entries {
            if len % BLOCK == 0 {
                index.push((key.clone(), offset));
            }
            offset += put(&mut out, &key, ts)?;
            bloom.add(hash(&key));
            max_ts = max_ts.max(ts);
            len += 1;
        }
        out.flush()?;
        drop(out);
        Ok(Run { file: File::open(&path)?, path, index, end: offset, bloom, len, max_ts, level })
    }

    /// The event time `key` was first counted at, if this run holds it.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<i64>> {
        if !self.bloom.may_hold(hash(key)) {
            return Ok(None);
        }
        let block = self.index.partition_point(|(first, _)| first.as_slice() <= key);
        if block == 0 {
            return Ok(None);
        }
        let start = self.index[block - 1].1;
        let stop = self.index.get(block).map_or(self.end, |(_, at)| *at);
        let mut buf = vec![0u8; (stop - start) as usize];
        self.file.read_exact_at(&mut buf, start)?;
        let mut rest = &buf[..];
        while let Some((k, ts, used)) = take(rest) {
            match k.cmp(key) {
                std::cmp::Ordering::Equal => return Ok(Some(ts)),
                std::cmp::Ordering::Greater => break,
                std::cmp::Ordering::Less => rest = &rest[used..],
            }
        }
        Ok(None)
    }

    /// Every entry, in key order, read sequentially.
    pub fn entries(&self) -> io::Result<Entries> {
        Ok(Entries { reader: BufReader::with_capacity(1 << 16, File::open(&self.path)?) })
    }

    /// Memory held for lookups: the filter and the sparse index.
    pub fn memory_bytes(&self) -> usize {
        self.bloom.bytes() + self.index.iter().map(|(k, _)| k.len().max(24) + 8).sum::<usize>()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.end
    }

    pub fn delete(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

pub struct Entries {
    reader: BufReader<File>,
}

impl Iterator for Entries {
    type Item = io::Result<(Key, i64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut len = [0u8; 2];
        match self.reader.read_exact(&mut len) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
            Err(e) => return Some(Err(e)),
            Ok(()) => {}
        }
        let mut key = Key::from_elem(0, u16::from_le_bytes(len) as usize);
        let mut ts = [0u8; 8];
        let read = self.reader.read_exact(&mut key).and_then(|_| self.reader.read_exact(&mut ts));
        Some(read.map(|_| (key, i64::from_le_bytes(ts))))
    }
}
