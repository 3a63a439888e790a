//! Forwarded batches: what one partition forwards to another in a flush travels as one record of the repartition
//! topic, with the sending partition's source watermark after it. One record per owner and flush instead of one per
//! forwarded event: producing and reading records one by one cost more than routing them.
//!
//! The value is msgpack (readable from Python): an array of `[input offset, record timestamp, value]`, the value as
//! `bin`, in the order the records were read; a record its source judged a correction carries a fourth element,
//! `true`. Unpacking borrows the values from the batch's bytes.

use rmp::decode::{read_array_len, read_bin_len, read_bool, read_int};
use rmp::encode::{write_array_len, write_bin, write_bool, write_sint};

/// One forwarded input record: where it was read, its Kafka timestamp, its value, and whether its source judged
/// it a correction.
pub struct Packed<'a> {
    pub offset: i64,
    pub record_ts: i64,
    pub value: &'a [u8],
    pub span: (usize, usize), // where the value lies in the batch's bytes
    pub correction: bool,
}

/// A record to pack: (input offset, record timestamp, value, correction).
pub type ToPack<'a> = (i64, i64, &'a [u8], bool);

pub fn pack<'a>(records: impl ExactSizeIterator<Item = ToPack<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    write_array_len(&mut out, records.len() as u32).expect("writing to a vector");
    for (offset, record_ts, value, correction) in records {
        write_array_len(&mut out, if correction { 4 } else { 3 }).expect("writing to a vector");
        write_sint(&mut out, offset).expect("writing to a vector");
        write_sint(&mut out, record_ts).expect("writing to a vector");
        write_bin(&mut out, value).expect("writing to a vector");
        if correction {
            write_bool(&mut out, true).expect("writing to a vector");
        }
    }
    out
}

pub fn unpack(buf: &[u8]) -> Result<Vec<Packed<'_>>, String> {
    let bad = |e: String| format!("a repartition topic batch is not readable ({e}): only Pulse may write that topic");
    let mut rd = buf;
    let n = read_array_len(&mut rd).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let fields = read_array_len(&mut rd).map_err(|e| bad(e.to_string()))?;
        if !(3..=4).contains(&fields) {
            return Err(bad("not a record".into()));
        }
        let offset: i64 = read_int(&mut rd).map_err(|e| bad(e.to_string()))?;
        let record_ts: i64 = read_int(&mut rd).map_err(|e| bad(e.to_string()))?;
        let len = read_bin_len(&mut rd).map_err(|e| bad(e.to_string()))? as usize;
        let start = buf.len() - rd.len();
        if rd.len() < len {
            return Err(bad("truncated".into()));
        }
        let value = &rd[..len];
        rd = &rd[len..];
        let correction = fields == 4 && read_bool(&mut rd).map_err(|e| bad(e.to_string()))?;
        out.push(Packed { offset, record_ts, value, span: (start, start + len), correction });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_returns_what_pack_took() {
        let values: Vec<Vec<u8>> = vec![b"{}".to_vec(), vec![0u8; 70_000], Vec::new()];
        let records: Vec<ToPack> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 1_000_000_007, -(i as i64), v.as_slice(), i == 1))
            .collect();
        let buf = pack(records.iter().copied());
        let back = unpack(&buf).unwrap();
        assert_eq!(back.len(), 3);
        for (r, p) in records.iter().zip(&back) {
            assert_eq!((r.0, r.1, r.2, r.3), (p.offset, p.record_ts, p.value, p.correction));
            assert_eq!(&buf[p.span.0..p.span.1], p.value);
        }
        assert!(unpack(&buf[..buf.len() - 1]).is_err());
    }
}
