//! The fast path of event validation: accepts only what `pulse.events.validate` accepts, with the same values.
//!
//! Anything it is not sure about (a rejection, or an input it does not handle, such as non-ASCII country codes or
//! a duplicated field) returns `None`, and Python's validator decides and classifies. So this path can be
//! stricter than the contract, never looser.

use serde::Deserialize;
use std::borrow::Cow;

pub const MAX_EVENT_BYTES: usize = 4096;
pub const MIN_TS_MS: i64 = 946_684_800_000;
pub const MAX_TS_MS: i64 = 4_102_444_800_000;
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

fn one() -> i64 {
    1
}
fn usd<'a>() -> Cow<'a, str> {
    Cow::Borrowed("USD")
}
fn ok<'a>() -> Cow<'a, str> {
    Cow::Borrowed("ok")
}
fn unknown<'a>() -> Cow<'a, str> {
    Cow::Borrowed("unknown")
}
fn zz<'a>() -> Cow<'a, str> {
    Cow::Borrowed("ZZ")
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
    #[serde(default = "one")]
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
    pub amount: Option<f64>,
    pub status: Cow<'a, str>,
}

fn chars_between(s: &str, lo: usize, hi: usize) -> bool {
    let n = if s.is_ascii() { s.len() } else { s.chars().count() };
    lo <= n && n <= hi
}

fn upper_ascii(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn money(v: Option<f64>) -> bool {
    v.is_none_or(|x| (0.0..=1_000_000.0).contains(&x))
}

/// `Some(event)` when the record is certainly valid; `None` when Python must decide.
pub fn fast_validate(raw: &[u8], ref_ts_ms: i64) -> Option<Event<'_>> {
    if raw.len() > MAX_EVENT_BYTES {
        return None;
    }
    let r: Raw = serde_json::from_str(std::str::from_utf8(raw).ok()?).ok()?; // one UTF-8 check, not one per string
    let ids_ok = chars_between(&r.event_id, 1, 64)
        && chars_between(&r.user_id, 1, 64)
        && chars_between(&r.session_id, 1, 64)
        && r.item_id.as_deref().is_none_or(|s| chars_between(s, 1, 64))
        && r.category.as_deref().is_none_or(|s| chars_between(s, 1, 64));
    let names_ok =
        chars_between(&r.event_type, 1, 32) && chars_between(&r.status, 1, 32) && chars_between(&r.device, 1, 16);
    let ranges_ok = (MIN_TS_MS..=MAX_TS_MS).contains(&r.ts)
        && (1..=10_000).contains(&r.quantity)
        && money(r.price)
        && money(r.amount)
        && r.schema_version == 1;
    if !(ids_ok && names_ok && ranges_ok) {
        return None;
    }
    if r.ts > ref_ts_ms + MAX_FUTURE_MS || !upper_ascii(&r.country, 2) || !upper_ascii(&r.currency, 3) {
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
        amount: r.amount,
        status: r.status,
    })
}

/// Python's `round(amount * 100)`: the same float product, ties to even.
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round_ties_even() as i64
}
