//! Per-user state and open sessions (the funnel's progress), with what changed since the last flush, and the
//! counters of the log-structured changelog that holds them.

use rustc_hash::FxHashMap;

use crate::state::{Counts, ABSENT, FUNNEL};
use crate::tables::{Names, Row};

/// A user's own series: counts and revenue per hour, for the hours up to `USER_HOURS` before their latest event.
pub const USER_HOUR_MS: i64 = 3_600_000;
pub const USER_HOURS: i64 = 24;

#[derive(Default, Clone)]
pub struct User {
    pub first: i64,
    pub last: i64,
    pub counts: Counts,
    pub spent: i64,
    pub purchases: u64,
    pub last_item: Option<u32>,
    pub hours: Vec<(i64, Row)>, // (hour start, its row), in hour order
    pub dirty: bool,            // changed since the last flush (changelog)
    pub pending: bool,          // changed since its document was last published
}

impl User {
    /// The first hour kept: `USER_HOURS` hours up to the one of the latest event (`last`, already updated).
    fn oldest_hour(&self) -> i64 {
        self.last - self.last.rem_euclid(USER_HOUR_MS) - (USER_HOURS - 1) * USER_HOUR_MS
    }

    /// Count an event of `ts` in its hour, unless that hour is older than the ones kept; forget hours that fell
    /// out of the kept range. An hour once dropped never comes back: `last` only grows.
    pub fn count_hour(&mut self, ts: i64, etype: u32, paid: Option<i64>) {
        let oldest = self.oldest_hour();
        if self.hours.first().is_some_and(|h| h.0 < oldest) {
            self.hours.retain(|h| h.0 >= oldest);
        }
        let hour = ts - ts.rem_euclid(USER_HOUR_MS);
        if hour < oldest {
            return;
        }
        let at = match self.hours.binary_search_by_key(&hour, |h| h.0) {
            Ok(i) => i,
            Err(i) => {
                // one more slot, not the four a first push reserves: a user is active in an hour or two, and a
                // million users' spare slots would cost hundreds of megabytes
                self.hours.reserve_exact(1);
                self.hours.insert(i, (hour, Row::default()));
                i
            }
        };
        self.hours[at].1.add(etype, paid);
    }
}

pub struct Session {
    pub steps: u8,
    pub last: i64,
    pub dirty: bool,
}

/// Per-user state and which users changed since the last flush (changelog) and publication (documents).
#[derive(Default)]
pub struct Users {
    pub ids: Names,
    pub list: Vec<User>,
    pub dirty: Vec<u32>,
    pub pending: Vec<u32>,
}

impl Users {
    /// The user's state, created (with `first` = `ABSENT`) when the id is new.
    pub fn get_mut(&mut self, user: u32) -> &mut User {
        let ux = user as usize;
        if ux >= self.list.len() {
            self.list.resize(ux + 1, User { first: ABSENT, ..Default::default() });
        }
        &mut self.list[ux]
    }
}

/// Open sessions (the funnel's progress) and which changed or closed since the last flush.
#[derive(Default)]
pub struct Sessions {
    pub map: FxHashMap<String, Session>,
    pub dirty: Vec<String>,
    pub gone: Vec<String>,
}

impl Sessions {
    /// Ordered funnel: a step counts once per session, only right after the previous step. A session idle past
    /// `timeout` (judged against the watermark `wm` on arrival, so replays agree) starts over. Returns the step
    /// this event counts for, or -1.
    pub fn advance(&mut self, sid: &str, etype: &str, ts: i64, wm: i64, timeout: i64) -> i32 {
        let step = FUNNEL.iter().position(|&s| s == etype).map_or(-1, |i| i as i32);
        let session = match self.map.get_mut(sid) {
            Some(s) => s,
            None => self.map.entry(sid.to_owned()).or_insert(Session { steps: 0, last: ts, dirty: false }),
        };
        if session.last < wm - timeout {
            session.steps = 0;
            session.last = ts;
        }
        session.last = session.last.max(ts);
        if !session.dirty {
            session.dirty = true;
            self.dirty.push(sid.to_owned());
        }
        if step >= 0 && session.steps as i32 == step {
            session.steps = step as u8 + 1;
            return step;
        }
        -1
    }
}

/// The entity log (users and sessions): snapshot chunks plus delta records since.
#[derive(Default)]
pub struct EntityLog {
    pub snap_epoch: u64,
    pub snap_chunks: u64,
    pub delta_first: u64,
    pub delta_next: u64,
    pub entries: u64,
}
