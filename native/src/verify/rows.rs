//! What the tally counts into: interned names, counts by name, and the rows and summaries of one window, with
//! the exact values and users the engine's sketches estimate. Merging follows `pulse.verify.tally`'s rules.

use std::rc::Rc;

use rustc_hash::{FxHashMap, FxHashSet};

/// Strings seen often (event types, ids, values), each stored once and counted by number.
#[derive(Default)]
pub struct Names {
    ids: FxHashMap<Rc<str>, u32>,
    pub names: Vec<Rc<str>>,
}

impl Names {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let name: Rc<str> = Rc::from(s);
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name, i);
        i
    }

    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// Counts by name (few names: a list beats a map).
pub type ByName = Vec<(u32, i64)>;

pub fn bump(counts: &mut ByName, key: u32, n: i64) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some(c) => c.1 += n,
        None => counts.push((key, n)),
    }
}

/// A breakdown row's, user hour's or item's numbers: counts by event type, ok purchases and their cents.
#[derive(Default, Clone)]
pub struct Tallied {
    pub counts: ByName,
    pub revenue_cents: i64,
    pub purchases: i64,
}

impl Tallied {
    pub fn count(&mut self, event_type: u32, paid: Option<i64>) {
        bump(&mut self.counts, event_type, 1);
        if let Some(cents) = paid {
            self.revenue_cents += cents;
            self.purchases += 1;
        }
    }

    pub fn merge(&mut self, other: &Tallied) {
        for &(k, n) in &other.counts {
            bump(&mut self.counts, k, n);
        }
        self.revenue_cents += other.revenue_cents;
        self.purchases += other.purchases;
    }
}

/// A window summary, with the exact values its sketches estimate and its exact set of users.
pub struct WindowDoc {
    pub events: i64,
    pub counts: ByName,
    pub status: ByName,
    pub errors: i64,
    pub purchases: i64,
    pub revenue_cents: i64,
    pub min_cents: Option<i64>,
    pub max_cents: Option<i64>,
    pub funnel: Vec<i64>,
    pub amounts: Vec<i64>,
    pub prices: Vec<i64>,
    pub funnel_unchecked: bool,
    pub users: FxHashSet<u32>,
}

impl WindowDoc {
    pub fn new(steps: usize) -> Self {
        WindowDoc {
            events: 0,
            counts: Vec::new(),
            status: Vec::new(),
            errors: 0,
            purchases: 0,
            revenue_cents: 0,
            min_cents: None,
            max_cents: None,
            funnel: vec![0; steps],
            amounts: Vec::new(),
            prices: Vec::new(),
            funnel_unchecked: false,
            users: FxHashSet::default(),
        }
    }

    pub fn merge(&mut self, d: &WindowDoc) {
        self.events += d.events;
        self.errors += d.errors;
        self.purchases += d.purchases;
        self.revenue_cents += d.revenue_cents;
        for &(k, n) in &d.counts {
            bump(&mut self.counts, k, n);
        }
        for &(k, n) in &d.status {
            bump(&mut self.status, k, n);
        }
        for (mine, theirs) in self.funnel.iter_mut().zip(&d.funnel) {
            *mine += theirs;
        }
        self.min_cents = match (self.min_cents, d.min_cents) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_cents = match (self.max_cents, d.max_cents) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.amounts.extend_from_slice(&d.amounts);
        self.prices.extend_from_slice(&d.prices);
        self.funnel_unchecked |= d.funnel_unchecked;
        self.users.extend(d.users.iter().copied());
    }
}

/// Every document of one window (a size and a start): its summary, breakdown rows and item rows.
#[derive(Default)]
pub struct Bucket {
    pub window: Option<WindowDoc>,
    pub dims: FxHashMap<(u8, u32), Tallied>,
    pub items: FxHashMap<u32, Tallied>,
}
