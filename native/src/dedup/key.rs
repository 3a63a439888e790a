//! How an event id is kept: a canonical UUID (lowercase, 36 characters, what SDKs and the collector send) as
//! its 16 bytes, any other id as its text. Exact: two ids make equal keys only if they are equal.

use smallvec::SmallVec;

/// An encoded id: a tag byte, then the UUID's 16 bytes or the id's text.
pub type Key = SmallVec<[u8; 24]>;

const UUID: u8 = 0;
const TEXT: u8 = 1;

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None, // uppercase is another id: "A" and "a" differ
    }
}

fn uuid(b: &[u8]) -> Option<[u8; 16]> {
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().copied().filter(|&c| c != b'-');
    for byte in out.iter_mut() {
        *byte = (hex(digits.next()?)? << 4) | hex(digits.next()?)?;
    }
    Some(out)
}

pub fn encode(id: &str) -> Key {
    let b = id.as_bytes();
    let mut key = Key::new();
    match uuid(b) {
        Some(raw) => {
            key.push(UUID);
            key.extend_from_slice(&raw);
        }
        None => {
            key.push(TEXT);
            key.extend_from_slice(b);
        }
    }
    key
}

/// A well-mixed 64-bit hash of a key (for the Bloom filters).
pub fn hash(key: &[u8]) -> u64 {
    crate::hll::mixed_hash(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_packed_and_everything_else_kept_apart() {
        let id = "0192a3b4-c5d6-7e8f-9012-3456789abcde";
        assert_eq!(encode(id).len(), 17);
        assert_ne!(encode(id), encode(&id.to_uppercase()));
        assert_eq!(encode(&id.to_uppercase()).len(), 37);
        assert_ne!(encode("e1"), encode("e2"));
        assert_eq!(encode("e1"), encode("e1"));
        assert_eq!(encode("0192a3b4c5d67e8f90123456789abcde0000").len(), 37); // no dashes: text
    }
}
