//! Forwarded batches: what one partition forwards to another in a flush travels as one record of the repartition
//! topic, with the sending partition's source watermark after it. One record per owner and flush instead of one per
//! forwarded event: producing and reading records one by one cost more than routing them.
//!
//! The value is msgpack (readable from Python): an array of `[input offset, record timestamp, value]`, the value as
//! `bin`, in the order the records were read. Unpacking borrows the values from the batch's bytes.

use rmp::decode::{read_array_len, read_bin_len, read_int};
use rmp::encode::{write_array_len, write_bin, write_sint};

/// One forwarded input record: where it was read, its Kafka timestamp, its value.
pub struct Packed<'a> {
    pub offset: i64,
    pub record_ts: i64,
    pub value: &'a [u8],
    pub span: (usize, usize), // where the value lies in the batch's bytes
}

pub fn pack<'a>(records: impl ExactSizeIterator<Item = (i64, i64, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    write_array_len(&mut out, records.len() as u32).expect("writing to a vector");
    for (offset, record_ts, value) in records {
        write_array_len(&mut out, 3).expect("writing to a vector");
        write_sint(&mut out, offset).expect("writing to a vector");
        write_sint(&mut out, record_ts).expect("writing to a vector");
        write_bin(&mut out, value).expect("writing to a vector");
    }
    out
}

pub fn unpack(buf: &[u8]) -> Result<Vec<Packed<'_>>, String> {
    let bad = |e: String| format!("a repartition topic batch is not readable ({e}): only Pulse may write that topic");
    let mut rd = buf;
    let n = read_array_len(&mut rd).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if read_array_len(&mut rd).map_err(|e| bad(e.to_string()))? != 3 {
            return Err(bad("not a record".into()));
        }
        let offset: i64 = read_int(&mut rd).map_err(|e| bad(e.to_string()))?;
        let record_ts: i64 = read_int(&mut rd).map_err(|e| bad(e.to_string()))?;
        let len = read_bin_len(&mut rd).map_err(|e| bad(e.to_string()))? as usize;
        let start = buf.len() - rd.len();
        if rd.len() < len {
            return Err(bad("truncated".into()));
        }
        out.push(Packed { offset, record_ts, value: &rd[..len], span: (start, start + len) });
        rd = &rd[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_returns_what_pack_took() {
        let values: Vec<Vec<u8>> = vec![b"{}".to_vec(), vec![0u8; 70_000], Vec::new()];
        let records: Vec<(i64, i64, &[u8])> =
            values.iter().enumerate().map(|(i, v)| (i as i64 * 1_000_000_007, -(i as i64), v.as_slice())).collect();
        let buf = pack(records.iter().copied());
        let back = unpack(&buf).unwrap();
        assert_eq!(back.len(), 3);
        for (r, p) in records.iter().zip(&back) {
            assert_eq!((r.0, r.1, r.2), (p.offset, p.record_ts, p.value));
            assert_eq!(&buf[p.span.0..p.span.1], p.value);
        }
        assert!(unpack(&buf[..buf.len() - 1]).is_err());
    }
}
