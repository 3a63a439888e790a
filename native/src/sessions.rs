//! Open sessions: the ordered funnel's progress, on two tracks.
//!
//! A window's own funnel counts what the session's on-time events decide. A correction of a session still held
//! (its latest on-time event within the session timeout before the owner watermark) joins it: it sits after the
//! settled events and before the open ones, and never starts or ends a run. What it changes, its own step and
//! the open events' steps decided again, goes to revisions: the with-corrections track's steps minus the
//! on-time ones. So a window's own documents never depend on corrections, and the sum of its revisions does not
//! depend on where flushes fell.

use rustc_hash::FxHashMap;

use crate::progress::NEVER;

/// The ordered funnel a session advances through (`pulse.aggregate.model.FUNNEL`).
pub const FUNNEL: [&str; 4] = ["view", "click", "add_to_cart", "purchase"];

/// An ok event of an open session at or after the owner watermark: where it sorts, and the funnel step it
/// counts for (-1: none) on time and with the corrections that joined.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub ts: i64,
    pub kind: i8, // its funnel step (-1: another event type)
    pub counted: i8,
    pub revised: i8,
}

/// Funnel changes: (event time, step, +1 or -1), to the windows' own funnels and to their revisions.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct FunnelChanges {
    pub own: Vec<(i64, usize, i64)>,
    pub revised: Vec<(i64, usize, i64)>,
}

/// A run of the funnel so far: the steps it reached on time and with the corrections that joined (None: the
/// same), and the time of its last on-time event.
#[derive(Clone, Copy)]
struct Run {
    steps: u8,
    revised: Option<u8>,
    last: i64,
}

impl Run {
    /// One on-time event after the run: a gap longer than `timeout` starts the funnel over on both tracks. The
    /// step it counts for on each.
    fn next(&mut self, ts: i64, kind: i8, timeout: i64) -> (i8, i8) {
        if self.last != NEVER && ts - self.last > timeout {
            self.steps = 0;
            self.revised = self.revised.map(|_| 0);
        }
        self.last = ts;
        let on = count(&mut self.steps, kind);
        let revised = self.revised.as_mut().map_or(on, |r| count(r, kind));
        (on, revised)
    }
}

/// A step counts once per run, only right after the previous one.
fn count(steps: &mut u8, kind: i8) -> i8 {
    if kind >= 0 && *steps as i8 == kind {
        *steps += 1;
        return kind;
    }
    -1
}

/// A session's funnel: settled up to the watermark (the steps reached and the time of the run's last event), and
/// its ok events since, in event-time order, whose steps may still change as earlier events arrive.
pub struct Session {
    pub steps: u8,
    pub revised: Option<u8>, // the steps reached with the corrections that joined (None: as on time)
    pub last: i64,           // NEVER: nothing settled yet
    pub open: Vec<Step>,
    pub dirty: bool,
}

impl Session {
    pub fn new() -> Self {
        Session { steps: 0, revised: None, last: NEVER, open: Vec::new(), dirty: false }
    }

    /// The latest on-time event time of the session.
    pub fn latest(&self) -> i64 {
        self.open.last().map_or(self.last, |s| s.ts)
    }

    fn run(&self) -> Run {
        Run { steps: self.steps, revised: self.revised, last: self.last }
    }

    /// Decide the open events again from the settled run, on both tracks.
    fn decide(&mut self, timeout: i64, changes: &mut FunnelChanges) {
        let mut run = self.run();
        for s in self.open.iter_mut() {
            let (on, revised) = run.next(s.ts, s.kind, timeout);
            if on != s.counted {
                if s.counted >= 0 {
                    changes.own.push((s.ts, s.counted as usize, -1));
                }
                if on >= 0 {
                    changes.own.push((s.ts, on as usize, 1));
                }
            }
            // a revision holds the with-corrections step minus the on-time one
            let mut delta = [0i64; FUNNEL.len()];
            for (k, sign) in [(revised, 1), (on, -1), (s.revised, -1), (s.counted, 1)] {
                if k >= 0 {
                    delta[k as usize] += sign;
                }
            }
            for (k, &d) in delta.iter().enumerate() {
                if d != 0 {
                    changes.revised.push((s.ts, k, d));
                }
            }
            (s.counted, s.revised) = (on, revised);
        }
    }

    /// Forget open events that can never count nor start a run, so a busy session stays small: one between two
    /// neighbours within `timeout` of each other (no gap can ever open there: events only arrive) that is not a
    /// funnel step, or is a first step with an earlier first step within `timeout` before it (without a gap, the
    /// funnel has left step one by then on both tracks, and never goes back).
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
            if bridged && idle && s.counted < 0 && s.revised < 0 {
                continue;
            }
            if s.kind == 0 {
                view = Some(s.ts);
            }
            kept.push(s);
        }
        self.open = kept;
    }

    /// Fold the open events below the watermark into the settled part: no on-time event below it can arrive any
    /// more. The tracks are one again once corrections changed nothing left open.
    pub fn settle(&mut self, wm: i64, timeout: i64) {
        let n = self.open.iter().take_while(|s| s.ts < wm).count();
        let mut run = self.run();
        for s in self.open.drain(..n) {
            run.next(s.ts, s.kind, timeout);
        }
        (self.steps, self.revised, self.last) = (run.steps, run.revised, run.last);
        if self.revised == Some(self.steps) && self.open.iter().all(|s| s.revised == s.counted) {
            self.revised = None;
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

/// Open sessions (the funnel's progress) and which changed or closed since the last flush.
#[derive(Default)]
pub struct Sessions {
    pub map: FxHashMap<String, Session>,
    pub dirty: Vec<String>,
    pub gone: Vec<String>,
}

fn kind_of(etype: &str) -> i8 {
    FUNNEL.iter().position(|&s| s == etype).map_or(-1, |i| i as i8)
}

impl Sessions {
    /// Once a flush is handed to its transaction, which logged the changed and closed sessions.
    pub fn flushed(&mut self) {
        for sid in self.dirty.drain(..) {
            if let Some(s) = self.map.get_mut(&sid) {
                s.dirty = false;
            }
        }
        self.gone.clear();
    }

    fn touched(session: &mut Session, dirty: &mut Vec<String>, sid: &str) {
        if !session.dirty {
            session.dirty = true;
            dirty.push(sid.to_owned());
        }
    }

    /// An on-time ok event. Ordered funnel, in event time: a session's ok events sorted by (time, step), a step
    /// counts once per run, only right after the previous step, and a gap longer than `timeout` starts a new run.
    /// So the steps do not depend on the order events arrive in: an event that arrives after later ones
    /// re-decides the later ones (all at or after the watermark `wm`, so in windows still open).
    pub fn advance(&mut self, sid: &str, etype: &str, ts: i64, wm: i64, timeout: i64) -> FunnelChanges {
        let kind = kind_of(etype);
        let session = match self.map.get_mut(sid) {
            Some(s) => s,
            None => self.map.entry(sid.to_owned()).or_default(),
        };
        Sessions::touched(session, &mut self.dirty, sid);
        session.settle(wm, timeout);
        let at = session.open.partition_point(|s| (s.ts, s.kind) <= (ts, kind));
        session.open.insert(at, Step { ts, kind, counted: -1, revised: -1 });
        let mut changes = FunnelChanges::default();
        session.decide(timeout, &mut changes);
        session.compact(timeout);
        changes
    }

    /// A correction of an ok event at `ts`: it joins its session if the session is held at the owner watermark
    /// `wm`, counting its step if that is the next one with the corrections that joined before it; the open
    /// events are then decided again. Otherwise it counts no funnel step.
    pub fn correct(&mut self, sid: &str, etype: &str, ts: i64, wm: i64, timeout: i64) -> FunnelChanges {
        let mut changes = FunnelChanges::default();
        let kind = kind_of(etype);
        let Some(session) = self.map.get_mut(sid) else { return changes };
        if kind < 0 || session.latest() < wm.saturating_sub(timeout) {
            return changes;
        }
        Sessions::touched(session, &mut self.dirty, sid);
        session.settle(wm, timeout);
        let reached = session.revised.unwrap_or(session.steps);
        if reached as i8 != kind {
            return changes;
        }
        session.revised = Some(reached + 1);
        changes.revised.push((ts, kind as usize, 1));
        session.decide(timeout, &mut changes);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_000;

    fn net(changes: &[(i64, usize, i64)]) -> Vec<(i64, usize, i64)> {
        let mut sums: std::collections::BTreeMap<(i64, usize), i64> = Default::default();
        for &(ts, k, d) in changes {
            *sums.entry((ts, k)).or_default() += d;
        }
        sums.into_iter().filter(|&(_, d)| d != 0).map(|((ts, k), d)| (ts, k, d)).collect()
    }

    #[test]
    fn a_correction_of_a_held_session_counts_its_step_and_moves_the_later_ones_in_revisions() {
        let mut s = Sessions::default();
        let mut own = Vec::new();
        own.extend(s.advance("s", "view", 100, 0, T).own);
        own.extend(s.advance("s", "add_to_cart", 500, 0, T).own); // not counted on time: click is missing
                                                                  // the watermark passed the view; the click comes late
        let c = s.correct("s", "click", 300, 400, T);
        assert_eq!(net(&own), vec![(100, 0, 1)]);
        assert_eq!(net(&c.revised), vec![(300, 1, 1), (500, 2, 1)]);
        assert!(c.own.is_empty());
        // a purchase on time counts on the with-corrections track only
        let p = s.advance("s", "purchase", 600, 400, T);
        assert!(p.own.is_empty());
        assert_eq!(net(&p.revised), vec![(600, 3, 1)]);
    }

    #[test]
    fn a_correction_of_a_session_not_held_counts_nothing() {
        let mut s = Sessions::default();
        s.advance("s", "view", 100, 0, T);
        assert_eq!(s.correct("s", "click", 200, 100 + T + 1, T), FunnelChanges::default());
        assert_eq!(s.correct("other", "view", 200, 300, T), FunnelChanges::default());
    }

    #[test]
    fn the_tracks_meet_again_after_a_gap() {
        let mut s = Sessions::default();
        s.advance("s", "view", 100, 0, T);
        s.correct("s", "click", 150, 200, T);
        assert_eq!(s.map["s"].revised, Some(2));
        let later = s.advance("s", "view", 100 + 5 * T, 200, T);
        assert!(later.revised.is_empty()); // a new run: counted on time, as with the corrections
        s.advance("s", "click", 100 + 5 * T + 1, 100 + 5 * T + 1, T);
        s.map.get_mut("s").unwrap().settle(100 + 6 * T, T);
        assert_eq!(s.map["s"].revised, None);
    }
}
