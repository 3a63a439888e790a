//! Per-user state, with what changed since the last flush, and the counters of the log-structured changelog
//! that holds users and sessions.

use std::collections::VecDeque;

use crate::seen::Seen;
use crate::tables::{Counts, Names, Row};

/// `User::first` of an interned id without user state (seen only in a window's user set so far).
pub const ABSENT: i64 = i64::MIN;

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

    /// Once a flush is handed to its transaction, which logged the changed users and published the first `sent`
    /// pending ones.
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

/// The entity log (users and sessions): snapshot chunks plus delta records since.
#[derive(Default)]
pub struct EntityLog {
    pub snap_epoch: u64,
    pub snap_chunks: u64,
    pub delta_first: u64,
    pub delta_next: u64,
    pub entries: u64,
}
