//! `pulse bench ids`: what holding a partition's event ids costs, in the store (`SeenIds`) and in the plain map the
//! engine keeps for a short horizon. Each kind runs in a process of its own, so its peak RSS is its own.

use std::path::PathBuf;
use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rustc_hash::FxHashMap;

use super::key::encode;
use super::SeenIds;
use crate::tables::EventKey;

/// What one kind did with `inserted` ids.
#[pyclass(get_all, frozen, module = "pulse.aggregate._core")]
pub struct IdsMeasured {
    pub inserted: usize,
    pub insert_s: f64,
    pub lookups: usize,
    pub lookup_s: f64,
    /// Lookups answered wrongly (a held id not found, or not with its event time; an absent id found).
    pub wrong: usize,
    /// Restore only: building the store from the ids, as restore does; the store's layout.
    pub restore_s: f64,
    pub runs: usize,
    pub disk_bytes: u64,
    pub memory_bytes: usize,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 31;
    x = x.wrapping_mul(0x7fb5_d329_728e_a185);
    x ^= x >> 27;
    x = x.wrapping_mul(0x81da_def4_bc2d_d44d);
    x ^ (x >> 33)
}

/// The `i`-th id: a UUIDv7 as SDKs make them (milliseconds first, then random bits), and its event time.
fn id(i: u64) -> (String, i64) {
    let ms = 1_700_000_000_000 + i / 4; // about 4 ids per millisecond
    let r = mix(i);
    let s = format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        ms >> 16,
        ms & 0xffff,
        r & 0xfff,
        0x8000 | ((r >> 12) & 0x3fff),
        (r >> 26) & 0xffff_ffff_ffff
    );
    (s, ms as i64)
}

/// Hold `count` ids one way (`kind`: inserted into the "map" or the "store", or the store built by "restore"),
/// then look up as many held ids as absent ones.
#[pyfunction]
#[pyo3(signature = (kind, count, dir, seal_at = crate::progress::SEAL_AT, lookups = 1_000_000))]
pub fn measure_ids(kind: &str, count: usize, dir: PathBuf, seal_at: usize, lookups: usize) -> PyResult<IdsMeasured> {
    let n = count as u64;
    let probe = |j: usize| -> u64 {
        let r = mix(j as u64 ^ 0x5eed);
        if j.is_multiple_of(2) {
            r % n.max(1) // held
        } else {
            n + r % n.max(1) // never inserted
        }
    };
    let io = |e: std::io::Error| PyValueError::new_err(format!("{}: {e}", dir.display()));
    let started = Instant::now();
    let mut out = IdsMeasured {
        inserted: count,
        insert_s: 0.0,
        lookups,
        lookup_s: 0.0,
        wrong: 0,
        restore_s: 0.0,
        runs: 0,
        disk_bytes: 0,
        memory_bytes: 0,
    };
    match kind {
        "map" => {
            let mut map: FxHashMap<EventKey, i64> = FxHashMap::default();
            for i in 0..n {
                let (s, ts) = id(i);
                map.insert(EventKey::new(&s), ts);
            }
            out.insert_s = started.elapsed().as_secs_f64();
            let t = Instant::now();
            for j in 0..lookups {
                let i = probe(j);
                let (s, ts) = id(i);
                let want = (i < n).then_some(ts);
                out.wrong += usize::from(map.get(&EventKey::new(&s)).copied() != want);
            }
            out.lookup_s = t.elapsed().as_secs_f64();
            out.memory_bytes = map.capacity() * (std::mem::size_of::<(EventKey, i64)>() + 1)
                + map.keys().map(|k| if let EventKey::Long(s) = k { s.len() } else { 0 }).sum::<usize>();
        }
        "store" | "restore" => {
            let ids = (0..n).map(|i| {
                let (s, ts) = id(i);
                (encode(&s), ts)
            });
            let store = if kind == "store" {
                let mut store = SeenIds::new(dir.clone(), seal_at).map_err(io)?;
                for (key, ts) in ids {
                    store.insert_key(key, ts, i64::MIN).map_err(io)?;
                }
                out.insert_s = started.elapsed().as_secs_f64();
                store
            } else {
                let store = SeenIds::restore(dir.clone(), seal_at, ids).map_err(io)?;
                out.restore_s = started.elapsed().as_secs_f64();
                store
            };
            let t = Instant::now();
            for j in 0..lookups {
                let i = probe(j);
                let (s, ts) = id(i);
                let want = (i < n).then_some(ts);
                out.wrong += usize::from(store.get(&s).map_err(io)? != want);
            }
            out.lookup_s = t.elapsed().as_secs_f64();
            out.runs = store.runs();
            out.disk_bytes = store.disk_bytes();
            out.memory_bytes = store.memory_bytes();
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
        other => return Err(PyValueError::new_err(format!("no such kind {other:?}: map, store or restore"))),
    }
    Ok(out)
}
