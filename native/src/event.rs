//! The fast path of event validation: accepts only what `pulse.events.validate` accepts, with the same values.
//!
//! Anything it is not sure about (a rejection, or an input it does not handle, such as non-ASCII country codes or
//! a duplicated field) returns `None`, and Python's validator decides and classifies. So this path can be
//! stricter than the contract, never looser.

use serde::Deserialize;
use std::borrow::Cow;

/// The contract's declared rules, generated from `pulse.events.schema` by `build.rs`.
#[allow(dead_code)] // every rule is generated; the validator reads those JSON Schema can state
mod contract {
    include!(concat!(env!("OUT_DIR"), "/contract.rs"));
}
use contract::*;
pub use contract::{MAX_EVENT_BYTES, MAX_FUTURE_MS};
pub const MIN_TS_MS: i64 = TS_RANGE.0;
pub const MAX_TS_MS: i64 = TS_RANGE.1;

fn one() -> i64 {
    QUANTITY_DEFAULT
}
fn usd<'a>() -> Cow<'a, str> {
    Cow::Borrowed(CURRENCY_DEFAULT)
}
fn ok<'a>() -> Cow<'a, str> {
    Cow::Borrowed(STATUS_DEFAULT)
}
fn unknown<'a>() -> Cow<'a, str> {
    Cow::Borrowed(DEVICE_DEFAULT)
}
fn zz<'a>() -> Cow<'a, str> {
    Cow::Borrowed(COUNTRY_DEFAULT)
}
fn version() -> i64 {
    SCHEMA_VERSION_DEFAULT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    ts: i64,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default = "one")]
    quantity: i64,
    #[serde(default)]
    amount: Option<f64>,
    #[serde(borrow, default = "usd")]
    currency: Cow<'a, str>,
    #[serde(borrow, default = "ok")]
    status: Cow<'a, str>,
    #[serde(borrow, default = "unknown")]
    device: Cow<'a, str>,
    #[serde(borrow, default = "zz")]
    country: Cow<'a, str>,
    #[serde(default = "version")]
    schema_version: i64,
}

/// The fields the aggregation reads.
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub ts: i64,
    pub user_id: Cow<'a, str>,
    pub session_id: Cow<'a, str>,
    pub item_id: Option<Cow<'a, str>>,
    pub category: Option<Cow<'a, str>>,
    pub price: Option<f64>,
    pub amount: Option<f64>,
    pub status: Cow<'a, str>,
    pub device: Cow<'a, str>,
    pub country: Cow<'a, str>,
}

fn chars_between(s: &str, lo: usize, hi: usize) -> bool {
    let n = if s.is_ascii() { s.len() } else { s.chars().count() };
    lo <= n && n <= hi
}

/// An event type or status: `pulse.events.schema.NAME_PATTERN` (spelled out here; a unit test holds it to the
/// declared pattern) within its declared length (they become field names).
fn name(s: &str, len: (usize, usize)) -> bool {
    let b = s.as_bytes();
    len.0.max(1) <= b.len()
        && b.len() <= len.1
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn upper_ascii(s: &str, len: (usize, usize)) -> bool {
    (len.0..=len.1).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn money(v: Option<f64>, range: (f64, f64)) -> bool {
    v.is_none_or(|x| (range.0..=range.1).contains(&x))
}

/// The high bit of every byte of `word` that is a quote, a backslash or below 0x20, exact up to the first such
/// byte (the lowest set bit); later bytes may be flagged spuriously, which no caller looks at.
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    (zero(quote) | zero(backslash) | (word.wrapping_sub(ONES * 0x20) & !word)) & HIGH
}

/// Where `scan` is in a JSON text.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        let b = self.s.as_bytes();
        while self.i < b.len() && matches!(b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.s.as_bytes().get(self.i) == Some(&c)).then(|| self.i += 1)
    }
    /// A string without escapes or control characters (anything else: None). Eight bytes at a time up to the
    /// first quote, backslash or control character (ids are most of an event's bytes, so this loop is hot).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let b = self.s.as_bytes();
        let start = self.i;
        let mut i = start;
        while let Some(chunk) = b.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let found = special_bytes(word);
            if found != 0 {
                i += (found.trailing_zeros() / 8) as usize;
                return self.close(start, i);
            }
            i += 8;
        }
        while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
            i += 1;
        }
        self.close(start, i)
    }
    /// The string from `start` if `end` is its closing quote (not a backslash, a control character or the end).
    fn close(&mut self, start: usize, end: usize) -> Option<&'a str> {
        if self.s.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        Some(&self.s[start..end])
    }
    /// A contract field's name with its quotes, as its bit; None for anything else (an unknown or escaped name),
    /// which serde then parses. Recognised by its first two letters and one fixed-size comparison, without
    /// scanning for the closing quote.
    fn key(&mut self) -> Option<usize> {
        self.ws();
        let r = &self.s.as_bytes()[self.i..];
        let bit = match [*r.get(1)?, *r.get(2)?] {
            [b'e', b'v'] if r.starts_with(b"\"event_id\"") => 0,
            [b'e', b'v'] if r.starts_with(b"\"event_type\"") => 1,
            [b't', b's'] if r.starts_with(b"\"ts\"") => 2,
            [b'u', b's'] if r.starts_with(b"\"user_id\"") => 3,
            [b's', b'e'] if r.starts_with(b"\"session_id\"") => 4,
            [b'i', b't'] if r.starts_with(b"\"item_id\"") => 5,
            [b'c', b'a'] if r.starts_with(b"\"category\"") => 6,
            [b'p', b'r'] if r.starts_with(b"\"price\"") => 7,
            [b'q', b'u'] if r.starts_with(b"\"quantity\"") => 8,
            [b'a', b'm'] if r.starts_with(b"\"amount\"") => 9,
            [b'c', b'u'] if r.starts_with(b"\"currency\"") => 10,
            [b's', b't'] if r.starts_with(b"\"status\"") => 11,
            [b'd', b'e'] if r.starts_with(b"\"device\"") => 12,
            [b'c', b'o'] if r.starts_with(b"\"country\"") => 13,
            [b's', b'c'] if r.starts_with(b"\"schema_version\"") => 14,
            _ => return None,
        };
        self.i += FIELDS[bit].len() + 2; // the name and its quotes
        Some(bit)
    }
    /// A JSON number's text (grammar checked); `integer`: only -?(0|[1-9][0-9]*).
    fn number(&mut self, integer: bool) -> Option<&'a str> {
        self.ws();
        let b = self.s.as_bytes();
        let start = self.i;
        let digits = |i: &mut usize| {
            let from = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - from
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let lead = i;
        let n = digits(&mut i);
        if n == 0 || (b[lead] == b'0' && n > 1) {
            return None;
        }
        if !integer {
            if b.get(i) == Some(&b'.') {
                i += 1;
                if digits(&mut i) == 0 {
                    return None;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if digits(&mut i) == 0 {
                    return None;
                }
            }
        } else if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = i;
        Some(&self.s[start..i])
    }
    fn text(&mut self) -> Option<Cow<'a, str>> {
        self.string().map(Cow::Borrowed)
    }
    fn int(&mut self) -> Option<i64> {
        self.number(true)?.parse().ok()
    }
    fn float(&mut self) -> Option<f64> {
        self.number(false)?.parse().ok() // correctly rounded, as Python's float()
    }
}

/// The contract's fields, in the order of `scan`'s bits (the first five are required).
const FIELDS: [&str; 15] = [
    "event_id",
    "event_type",
    "ts",
    "user_id",
    "session_id",
    "item_id",
    "category",
    "price",
    "quantity",
    "amount",
    "currency",
    "status",
    "device",
    "country",
    "schema_version",
];

/// The fast parse of the shape producers write: one flat object of the contract's fields, with plain strings
/// and numbers. None for anything else (escapes, null, nesting, duplicated or unknown fields), which serde then
/// parses; the result is the same as serde's wherever both succeed. Also where `ts`'s number is in `text`.
fn scan(text: &str) -> Option<(Raw<'_>, std::ops::Range<usize>)> {
    let mut c = Cursor { s: text, i: 0 };
    let mut r = Raw {
        event_id: Cow::Borrowed(""),
        event_type: Cow::Borrowed(""),
        ts: 0,
        user_id: Cow::Borrowed(""),
        session_id: Cow::Borrowed(""),
        item_id: None,
        category: None,
        price: None,
        quantity: one(),
        amount: None,
        currency: usd(),
        status: ok(),
        device: unknown(),
        country: zz(),
        schema_version: version(),
    };
    let mut seen = 0u16;
    let mut ts_at = 0..0;
    c.eat(b'{')?;
    loop {
        let bit = c.key()?; // an unknown field: serde decides
        c.eat(b':')?;
        if seen & (1 << bit) != 0 {
            return None;
        }
        seen |= 1 << bit;
        match bit {
            0 => r.event_id = c.text()?,
            1 => r.event_type = c.text()?,
            2 => {
                c.ws();
                let start = c.i;
                r.ts = c.int()?;
                ts_at = start..c.i;
            }
            3 => r.user_id = c.text()?,
            4 => r.session_id = c.text()?,
            5 => r.item_id = Some(c.text()?),
            6 => r.category = Some(c.text()?),
            7 => r.price = Some(c.float()?),
            8 => r.quantity = c.int()?,
            9 => r.amount = Some(c.float()?),
            10 => r.currency = c.text()?,
            11 => r.status = c.text()?,
            12 => r.device = c.text()?,
            13 => r.country = c.text()?,
            _ => r.schema_version = c.int()?,
        }
        if c.eat(b',').is_none() {
            break;
        }
    }
    c.eat(b'}')?;
    c.ws();
    (c.i == text.len() && seen & 0b11111 == 0b11111).then_some((r, ts_at))
}

/// `Some(event)` when the record is certainly valid; `None` when Python must decide.
pub fn fast_validate(raw: &[u8], ref_ts_ms: i64) -> Option<Event<'_>> {
    if raw.len() > MAX_EVENT_BYTES {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?; // one UTF-8 check, not one per string
    let r: Raw = match scan(text) {
        Some((r, _)) => r,
        None => serde_json::from_str(text).ok()?, // escapes, spacing or types the scanner leaves alone
    };
    checked(r, ref_ts_ms)
}

/// An event a client sent, certainly valid on its own clock and on the receiver's (see [`admit`]).
pub struct Admitted<'a> {
    pub event: Event<'a>,
    /// As sent: the device's own time.
    pub device_ts: i64,
    /// The record value: the event as sent, its `ts` moved to the receiver's clock.
    pub value: Cow<'a, [u8]>,
}

/// A client's event checked against the device's clock at sending (`sent_at`; the receive time when there is
/// none), then moved to the receiver's: `ts' = received - (sent_at - ts)`, and checked again. Only the shape
/// `scan` reads, so `ts` can be rewritten in place and the rest kept byte for byte; `None` when Python must
/// decide.
pub fn admit(raw: &[u8], sent_at: Option<i64>, received_ms: i64) -> Option<Admitted<'_>> {
    if raw.len() > MAX_EVENT_BYTES {
        return None;
    }
    let (r, ts_at) = scan(std::str::from_utf8(raw).ok()?)?;
    let mut event = checked(r, sent_at.unwrap_or(received_ms))?;
    let device_ts = event.ts;
    let Some(sent_at) = sent_at else {
        return Some(Admitted { event, device_ts, value: Cow::Borrowed(raw) });
    };
    let moved = received_ms.checked_sub(sent_at.checked_sub(device_ts)?)?;
    if !(MIN_TS_MS..=MAX_TS_MS).contains(&moved) || moved > received_ms + MAX_FUTURE_MS {
        return None;
    }
    let mut value = Vec::with_capacity(raw.len() + 4);
    value.extend_from_slice(&raw[..ts_at.start]);
    value.extend_from_slice(moved.to_string().as_bytes());
    value.extend_from_slice(&raw[ts_at.end..]);
    if value.len() > MAX_EVENT_BYTES {
        return None;
    }
    event.ts = moved;
    Some(Admitted { event, device_ts, value: Cow::Owned(value) })
}

/// The contract's checks beyond the shape, on a parsed event.
fn checked(r: Raw<'_>, ref_ts_ms: i64) -> Option<Event<'_>> {
    let within = |s: &str, len: (usize, usize)| chars_between(s, len.0, len.1);
    let ids_ok = within(&r.event_id, EVENT_ID_LEN)
        && within(&r.user_id, USER_ID_LEN)
        && within(&r.session_id, SESSION_ID_LEN)
        && r.item_id.as_deref().is_none_or(|s| within(s, ITEM_ID_LEN))
        && r.category.as_deref().is_none_or(|s| within(s, CATEGORY_LEN));
    let names_ok = name(&r.event_type, EVENT_TYPE_LEN) && name(&r.status, STATUS_LEN) && within(&r.device, DEVICE_LEN);
    let ranges_ok = (MIN_TS_MS..=MAX_TS_MS).contains(&r.ts)
        && (QUANTITY_RANGE.0..=QUANTITY_RANGE.1).contains(&r.quantity)
        && money(r.price, PRICE_RANGE)
        && money(r.amount, AMOUNT_RANGE)
        && r.schema_version == SCHEMA_VERSION_ONLY;
    if !(ids_ok && names_ok && ranges_ok) {
        return None;
    }
    let codes_ok = upper_ascii(&r.country, COUNTRY_LEN) && upper_ascii(&r.currency, CURRENCY_LEN);
    if r.ts > ref_ts_ms + MAX_FUTURE_MS || !codes_ok {
        return None;
    }
    let needs_item = r.event_type == "add_to_cart" || r.event_type == "purchase";
    if needs_item && r.item_id.is_none() || r.event_type == "purchase" && r.amount.is_none() {
        return None;
    }
    Some(Event {
        event_id: r.event_id,
        event_type: r.event_type,
        ts: r.ts,
        user_id: r.user_id,
        session_id: r.session_id,
        item_id: r.item_id,
        category: r.category,
        price: r.price,
        amount: r.amount,
        status: r.status,
        device: r.device,
        country: r.country,
    })
}

/// Python's `round(amount * 100)`: the same float product, ties to even.
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round_ties_even() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_reads_exactly_the_declared_fields_required_first() {
        let mut declared: Vec<&str> = PROPERTIES.to_vec();
        let mut scanned: Vec<&str> = FIELDS.to_vec();
        declared.sort_unstable();
        scanned.sort_unstable();
        assert_eq!(scanned, declared);
        let mut required = REQUIRED.to_vec();
        let mut first: Vec<&str> = FIELDS[..5].to_vec();
        required.sort_unstable();
        first.sort_unstable();
        assert_eq!(first, required);
        for (bit, field) in FIELDS.iter().enumerate() {
            let text = format!("\"{field}\":");
            assert_eq!(Cursor { s: &text, i: 0 }.key(), Some(bit), "{field}");
        }
    }

    #[test]
    fn the_name_check_spells_the_declared_pattern() {
        // `name` implements this pattern by hand: a changed pattern must change it too
        assert_eq!(EVENT_TYPE_PATTERN, "^[a-z][a-z0-9_]*$");
        assert_eq!(STATUS_PATTERN, EVENT_TYPE_PATTERN);
        for (s, ok) in [("view", true), ("add_to_cart", true), ("a1", true), ("", false), ("1a", false)] {
            assert_eq!(name(s, EVENT_TYPE_LEN), ok, "{s}");
        }
        assert!(!name(&"a".repeat(EVENT_TYPE_LEN.1 + 1), EVENT_TYPE_LEN));
    }

    #[test]
    fn a_clock_correction_rewrites_only_ts() {
        let raw = br#"{"event_id":"e","event_type":"click","ts":1700000000000,"user_id":"u","session_id":"s"}"#;
        let moved = admit(raw, Some(1_700_000_005_000), 1_700_000_065_000).expect("valid");
        assert_eq!(moved.device_ts, 1_700_000_000_000);
        assert_eq!(moved.event.ts, 1_700_000_060_000);
        let want = br#"{"event_id":"e","event_type":"click","ts":1700000060000,"user_id":"u","session_id":"s"}"#;
        assert_eq!(&*moved.value, want);
        assert!(admit(raw, Some(1_700_000_005_000), MIN_TS_MS).is_none()); // moved out of the contract's range
    }
}
