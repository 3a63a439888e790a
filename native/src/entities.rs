//! Per-user state and open sessions (the funnel's progress), with what changed since the last flush, and the
//! counters of the log-structured changelog that holds them.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use crate::progress::NEVER;
use crate::seen::Seen;
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
    pub item_ts: i64,           // the time of the event `last_item` comes from
    pub hours: Vec<(i64, Row)>, // (hour start, its row), in hour order
    pub seen: Seen,             // the windows it was counted in, within the correction horizon
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

/// An ok event of an open session at or after the owner watermark: where it sorts, and the funnel step it
/// counts for (-1: none).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub ts: i64,
    pub kind: i8, // its funnel step (-1: another event type)
    pub counted: i8,
}

/// A session's funnel: settled up to the watermark (the step reached and the time of the run's last event), and
/// its ok events since, in event-time order, whose steps may still change as earlier events arrive.
pub struct Session {
    pub steps: u8,
    pub last: i64, // NEVER: nothing settled yet
    pub open: Vec<Step>,
    pub dirty: bool,
}

impl Session {
    pub fn new() -> Self {
        Session { steps: 0, last: NEVER, open: Vec::new(), dirty: false }
    }

    /// The latest event time of the session.
    pub fn latest(&self) -> i64 {
        self.open.last().map_or(self.last, |s| s.ts)
    }

    /// One event after the run so far: a gap longer than `timeout` starts the funnel over.
    fn next(steps: &mut u8, last: &mut i64, ts: i64, kind: i8, timeout: i64) -> i8 {
        if *last != NEVER && ts - *last > timeout {
            *steps = 0;
        }
        *last = ts;
        if kind >= 0 && *steps as i8 == kind {
            *steps += 1;
            return kind;
        }
        -1
    }

    /// Forget open events that can never count nor start a run, so a busy session stays small: one between two
    /// neighbours within `timeout` of each other (no gap can ever open there: events only arrive) that is not a
    /// funnel step, or is a first step with an earlier first step within `timeout` before it (without a gap, the
    /// funnel has left step one by then, and never goes back).
    fn compact(&mut self, timeout: i64) {
        if self.open.len() < 3 {
            return;
        }
        let mut kept: Vec<Step> = Vec::with_capacity(self.open.len());
        let mut view: Option<i64> = None; // the latest first step kept
        for i in 0..self.open.len() {
            let s = self.open[i];
            let prev = kept.last().map(|p| p.ts);
            let bridged = match (prev, self.open.get(i + 1)) {
                (Some(p), Some(n)) => n.ts - p <= timeout,
                _ => false,
            };
            let idle = s.kind < 0 || (s.kind == 0 && view.is_some_and(|v| s.ts - v <= timeout));
            if bridged && idle && s.counted < 0 {
                continue;
            }
            if s.kind == 0 {
                view = Some(s.ts);
            }
            kept.push(s);
        }
        self.open = kept;
    }

    /// Fold the open events below the watermark into the settled part: no event below it can arrive any more.
    pub fn settle(&mut self, wm: i64, timeout: i64) {
        let n = self.open.iter().take_while(|s| s.ts < wm).count();
        for s in self.open.drain(..n) {
            Session::next(&mut self.steps, &mut self.last, s.ts, s.kind, timeout);
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

/// Per-user state and which users changed since the last flush (changelog) and publication (documents).
#[derive(Default)]
pub struct Users {
    pub ids: Names,
    pub list: Vec<User>,
    pub dirty: Vec<u32>,
    pub pending: Vec<u32>, // in the order they changed since published: documents go out from the front
    queued: u64,           // users ever put in `pending` (since this state was built)
    sent: u64,             // users ever taken off its front
    by: VecDeque<(i64, u64)>, // (a flush's wall clock, `queued` then): the first so many were waiting by then
}

impl Users {
    /// `user` changed since its document was published.
    pub fn queue(&mut self, user: u32) {
        self.pending.push(user);
        self.queued += 1;
    }

    /// Rebuilt pending users (a restore): they wait from the next flush on.
    pub fn requeue(&mut self, pending: Vec<u32>) {
        (self.queued, self.sent) = (pending.len() as u64, 0);
        self.pending = pending;
        self.by.clear();
    }

    /// How many pending users, from the front, have waited at least `delay` at wall clock `now` (a flush's).
    pub fn overdue(&mut self, now: i64, delay: i64) -> usize {
        if self.by.back().is_none_or(|&(_, q)| q < self.queued) {
            self.by.push_back((now, self.queued));
        }
        let waited = self.by.iter().take_while(|&&(at, _)| at <= now - delay).last().map_or(0, |&(_, q)| q);
        waited.saturating_sub(self.sent) as usize
    }

    /// After a committed flush, which logged the changed users and published the first `sent` pending ones.
    pub fn flushed(&mut self, sent: usize) {
        for &u in &self.dirty {
            self.list[u as usize].dirty = false;
        }
        self.dirty.clear();
        self.sent(sent);
    }

    /// The first `n` pending users' documents went out.
    fn sent(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        for u in self.pending.drain(..n) {
            self.list[u as usize].pending = false;
        }
        self.sent += n as u64;
        while self.by.front().is_some_and(|&(_, q)| q <= self.sent) {
            self.by.pop_front();
        }
    }

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
    /// After a committed flush, which logged the changed and closed sessions.
    pub fn flushed(&mut self) {
        for sid in self.dirty.drain(..) {
            if let Some(s) = self.map.get_mut(&sid) {
                s.dirty = false;
            }
        }
        self.gone.clear();
    }

    /// Ordered funnel, in event time: a session's ok events sorted by (time, step), a step counts once per run,
    /// only right after the previous step, and a gap longer than `timeout` starts a new run. So the steps do not
    /// depend on the order events arrive in: an event that arrives after later ones re-decides the later ones
    /// (all at or after the watermark `wm`, so in windows still open). Returns the changes to the windows'
    /// funnels: (event time, step, +1 or -1).
    pub fn advance(&mut self, sid: &str, etype: &str, ts: i64, wm: i64, timeout: i64) -> Vec<(i64, usize, i64)> {
        let kind = FUNNEL.iter().position(|&s| s == etype).map_or(-1, |i| i as i8);
        let session = match self.map.get_mut(sid) {
            Some(s) => s,
            None => self.map.entry(sid.to_owned()).or_default(),
        };
        if !session.dirty {
            session.dirty = true;
            self.dirty.push(sid.to_owned());
        }
        session.settle(wm, timeout);
        let at = session.open.partition_point(|s| (s.ts, s.kind) <= (ts, kind));
        session.open.insert(at, Step { ts, kind, counted: -1 });
        let (mut steps, mut last) = (session.steps, session.last);
        let mut changes = Vec::new();
        for s in session.open.iter_mut() {
            let counted = Session::next(&mut steps, &mut last, s.ts, s.kind, timeout);
            if counted != s.counted {
                if s.counted >= 0 {
                    changes.push((s.ts, s.counted as usize, -1));
                }
                if counted >= 0 {
                    changes.push((s.ts, counted as usize, 1));
                }
                s.counted = counted;
            }
        }
        session.compact(timeout);
        changes
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
