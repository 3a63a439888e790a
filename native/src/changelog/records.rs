//! The changelog's records, named. Each is a struct whose fields msgpack writes as an array in declaration order,
//! so a field is only ever appended (with a default for logs written before it) and every earlier log still
//! reads. The meta record carries the format; a log of a newer format than this build knows is refused.
//!
//! Written records borrow the state's names (`S = &str`); read ones own them (`S = String`).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::progress::{ACCEPTED, CORRECTED, DEAD_LETTERED, DUPLICATES, LATE, OUTCOMES};

/// The format this build writes. 1: every log before the format was recorded (the same records, read as 2).
/// 3: event ids are logged (`d/` records), so restore need not re-read the input for them.
pub const FORMAT: u32 = 3;
/// The first format that logs event ids.
pub const IDS_LOGGED: u32 = 3;

/// One named count (an event type or status and how many).
#[derive(Serialize, Deserialize)]
pub struct Count<S> {
    pub name: S,
    pub n: u64,
}

/// An item's row in an item shard (of a window or of the item state).
#[derive(Serialize, Deserialize)]
pub struct ItemRow<S> {
    pub item: S,
    pub category: Option<S>,
    pub counts: Vec<Count<S>>,
    pub cents: i64,
    pub purchases: u64,
}

/// A breakdown row: one value of one dimension in a window.
#[derive(Serialize, Deserialize)]
pub struct BreakdownRow<D, S> {
    pub dimension: D,
    pub value: S,
    pub counts: Vec<Count<S>>,
    pub cents: i64,
    pub purchases: u64,
}

/// A breakdown row's dimension as read: by name, or (logs before names) by its index in `DIMENSIONS` then.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Dimension {
    Name(String),
    Index(u8),
}

/// A category row as logged before breakdowns (restore only).
#[derive(Deserialize)]
pub struct CategoryRow {
    pub category: String,
    pub counts: Vec<Count<String>>,
    pub cents: i64,
    pub purchases: u64,
}

/// A window's summary.
#[derive(Serialize, Deserialize)]
pub struct Summary<S> {
    pub counts: Vec<Count<S>>,
    pub status: Vec<Count<S>>,
    pub revenue: Revenue,
    pub funnel: [u64; 4],
}

/// The windows a user was counted in (`seen.rs`): bitmaps by hour, under the exact-user sizes they were made for.
#[derive(Serialize, Deserialize)]
pub struct SeenRecord {
    pub sizes: Vec<i64>,
    pub hours: Vec<(i64, Vec<u64>)>,
}

/// Successful purchases of a window, in cents.
#[derive(Serialize, Deserialize, Clone, Copy)]
pub struct Revenue {
    pub count: i64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
}

impl Revenue {
    pub fn of(rev: [i64; 4]) -> Self {
        Revenue { count: rev[0], sum: rev[1], min: rev[2], max: rev[3] }
    }

    pub fn array(self) -> [i64; 4] {
        [self.count, self.sum, self.min, self.max]
    }
}

/// One quantile sketch of a window: its zeros and its bins.
#[derive(Serialize, Deserialize)]
pub struct SketchRecord {
    pub zeros: u64,
    pub bins: Vec<Bin>,
}

#[derive(Serialize, Deserialize)]
pub struct Bin {
    pub index: i32,
    pub count: u64,
}

/// A user's hour in its hourly series.
#[derive(Serialize, Deserialize)]
pub struct Hour<S> {
    pub start: i64,
    pub counts: Vec<Count<S>>,
    pub cents: i64,
    pub purchases: u64,
}

/// A user. `hours`, `item_ts` and `seen` came later: logs before them read as none, as the user's last event time,
/// and as none.
#[derive(Serialize, Deserialize)]
pub struct User<S> {
    pub first: i64,
    pub last: i64,
    pub counts: Vec<Count<S>>,
    pub spent: i64,
    pub purchases: u64,
    pub last_item: Option<S>,
    #[serde(default = "Vec::new")]
    pub hours: Vec<Hour<S>>,
    #[serde(default)]
    pub item_ts: Option<i64>,
    #[serde(default)]
    pub seen: Option<SeenRecord>,
}

/// An open session event: its time, funnel step and whether that step counted (on time, and with corrections).
#[derive(Serialize, Deserialize)]
pub struct OpenStep {
    pub ts: i64,
    pub step: i8,
    pub counted: i8,
    #[serde(default)]
    pub revised: Option<i8>, // the step it counts for with the corrections that joined (None: as on time)
}

/// A session. `open` came with sessions that follow event time: logs before read as none.
#[derive(Serialize, Deserialize)]
pub struct SessionRecord {
    pub steps: u8,
    pub last: i64,
    #[serde(default)]
    pub open: Vec<OpenStep>,
    #[serde(default)]
    pub revised: Option<u8>, // the steps reached with the corrections that joined (None: as on time)
}

/// An entry of a users-and-sessions delta or snapshot.
#[derive(Serialize, Deserialize)]
pub struct Entry<S> {
    pub kind: u8,
    pub id: S,
    pub user: Option<User<S>>,
    pub session: Option<SessionRecord>,
}

pub const USER: u8 = 0; // user entry, already published
pub const USER_PENDING: u8 = 3; // user entry, unpublished unless a users marker follows it
pub const SESSION: u8 = 1;
pub const SESSION_GONE: u8 = 2;

/// The accounting of a partition's input, in the order of `OUTCOMES`. `corrected` came later: logs before it
/// read as none.
#[derive(Serialize, Deserialize, Clone, Copy)]
pub struct Counters {
    pub accepted: u64,
    pub dead_lettered: u64,
    pub late: u64,
    pub duplicates: u64,
    #[serde(default)]
    pub corrected: u64,
}

impl Counters {
    pub fn of(c: [u64; OUTCOMES.len()]) -> Self {
        Counters {
            accepted: c[ACCEPTED],
            dead_lettered: c[DEAD_LETTERED],
            late: c[LATE],
            duplicates: c[DUPLICATES],
            corrected: c[CORRECTED],
        }
    }

    pub fn array(self) -> [u64; OUTCOMES.len()] {
        let mut c = [0; OUTCOMES.len()];
        (c[ACCEPTED], c[DEAD_LETTERED], c[LATE], c[DUPLICATES], c[CORRECTED]) =
            (self.accepted, self.dead_lettered, self.late, self.duplicates, self.corrected);
        c
    }
}

/// The partition's position, clock and counters, and where its users-and-sessions log stands. Every flush writes
/// it, last.
#[derive(Serialize, Deserialize)]
pub struct Meta {
    pub next_offset: i64,
    pub max_ts: i64,
    pub floor: i64,
    pub counters: Counters,
    pub snap_epoch: u64,
    pub snap_chunks: u64,
    pub delta_first: u64,
    pub delta_next: u64,
    pub entries: u64,
    #[serde(default = "format_before")]
    pub format: u32,
}

fn format_before() -> u32 {
    1
}

/// A watermark as logged.
#[derive(Serialize, Deserialize, Clone, Copy)]
pub struct MarkRecord {
    pub value: i64,
    pub idle: bool,
}

/// The owner side of a partition: position in the repartition topic, records forwarded, the sources' watermarks
/// as received, the owner watermark, the source watermark last sent and whether the source is idle.
#[derive(Serialize, Deserialize)]
pub struct Forwarding {
    pub repartition_next: i64,
    pub forwarded: u64,
    pub marks: Vec<MarkRecord>,
    pub owner: i64,
    pub sent: MarkRecord,
    pub idle: bool,
}

/// The owner side as read: as written now, or as logged before watermarks were carried to owners (its clocks are
/// dropped).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum ForwardingIn {
    Now(Forwarding),
    Before(ForwardingBefore),
}

#[derive(Deserialize)]
pub struct ForwardingBefore {
    pub repartition_next: i64,
    pub forwarded: u64,
    _sources: IgnoredAny,
    _clocks: IgnoredAny,
}
