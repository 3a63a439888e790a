//! The documents of a finished window, and users and items, as the Python dicts `pulse.verify.diff` compares:
//! the same shapes `pulse.verify.tally` makes.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet};

use super::rows::{Bucket, ByName, Names, Tallied};
use super::tally::{Finished, Level, Tally};

/// The field names and bounds the documents follow, read once from `pulse.verify.native.Model`.
pub struct Fields {
    amount: String,
    price: String,
    users: String,
    unchecked: String,
    exact_users_up_to_ms: i64,
    sketch_users_from_ms: i64,
}

impl Fields {
    pub fn new(model: &Bound<'_, PyAny>) -> PyResult<Self> {
        let get = |name: &str| model.getattr(name);
        Ok(Fields {
            amount: get("amount_field")?.extract()?,
            price: get("price_field")?.extract()?,
            users: get("users_field")?.extract()?,
            unchecked: get("unchecked")?.extract()?,
            exact_users_up_to_ms: get("exact_users_up_to_ms")?.extract()?,
            sketch_users_from_ms: get("sketch_users_from_ms")?.extract()?,
        })
    }
}

fn by_name<'py>(py: Python<'py>, counts: &ByName, names: &Names) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for &(k, n) in counts {
        out.set_item(names.name(k), n)?;
    }
    Ok(out)
}

fn tallied_into(d: &Bound<'_, PyDict>, t: &Tallied, types: &Names) -> PyResult<()> {
    let py = d.py();
    d.set_item(intern!(py, "counts"), by_name(py, &t.counts, types)?)?;
    d.set_item(intern!(py, "revenue_cents"), t.revenue_cents)?;
    d.set_item(intern!(py, "purchases"), t.purchases)
}

fn head<'py>(py: Python<'py>, kind: &str, lv: &Level, start: i64, p: usize) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "kind"), kind)?;
    d.set_item(intern!(py, "window"), &lv.name)?;
    d.set_item(intern!(py, "start"), start)?;
    d.set_item(intern!(py, "end"), start + lv.size)?;
    d.set_item(intern!(py, "partition"), p)?;
    Ok(d)
}

/// Append the documents of window `f` to `out` as (id, document).
pub fn windows(
    py: Python<'_>,
    t: &Tally,
    fields: &Fields,
    p: usize,
    f: &Finished,
    out: &Bound<'_, PyList>,
) -> PyResult<()> {
    let lv = &t.levels[f.level];
    let (name, start, b): (&str, i64, &Bucket) = (&lv.name, f.start, &f.bucket);
    if let Some(w) = &b.window {
        let d = head(py, "window", lv, start, p)?;
        d.set_item(intern!(py, "events"), w.events)?;
        d.set_item(intern!(py, "counts"), by_name(py, &w.counts, &t.types)?)?;
        d.set_item(intern!(py, "status"), by_name(py, &w.status, &t.statuses)?)?;
        d.set_item(intern!(py, "errors"), w.errors)?;
        d.set_item(intern!(py, "purchases"), w.purchases)?;
        d.set_item(intern!(py, "revenue_cents"), w.revenue_cents)?;
        d.set_item(intern!(py, "min_cents"), w.min_cents)?;
        d.set_item(intern!(py, "max_cents"), w.max_cents)?;
        let exact = lv.size <= fields.exact_users_up_to_ms;
        // a window's own document: the users counted on time; its revisions, summed: the other ones
        let adds = |u: &&u32| !f.revision || !t.on_time.contains(&(f.level, start, **u));
        d.set_item(intern!(py, "unique_users"), exact.then(|| w.users.iter().filter(adds).count()))?;
        let funnel = PyDict::new(py);
        for (step, n) in t.rules.funnel.iter().zip(&w.funnel) {
            funnel.set_item(step, n)?;
        }
        d.set_item(intern!(py, "funnel"), funnel)?;
        d.set_item(&fields.amount, &w.amounts)?;
        d.set_item(&fields.price, &w.prices)?;
        if w.funnel_unchecked {
            d.set_item(&fields.unchecked, PySet::new(py, ["funnel"])?)?;
        }
        out.append((format!("window:{name}:{start}:p{p}"), d))?;
        // a revision that only moved funnel steps counted no user: the engine publishes no sketch for it
        if lv.size >= fields.sketch_users_from_ms && !(f.revision && w.users.is_empty()) {
            let d = head(py, "window_users", lv, start, p)?;
            let users = PySet::empty(py)?;
            for &u in &w.users {
                users.add(t.user_ids.name(u))?;
            }
            d.set_item(&fields.users, users)?;
            out.append((format!("window_users:{name}:{start}:p{p}"), d))?;
        }
    }
    for (&(dim, value), row) in &b.dims {
        let (dim, value) = (&t.rules.dims[dim as usize].0, t.values.name(value));
        let d = head(py, "window_dim", lv, start, p)?;
        d.set_item(intern!(py, "dim"), dim)?;
        d.set_item(intern!(py, "value"), value)?;
        tallied_into(&d, row, &t.types)?;
        out.append((format!("window_dim:{name}:{start}:{dim}:{value}:p{p}"), d))?;
    }
    for (&item, row) in &b.items {
        let item_id = t.item_ids.name(item);
        let d = head(py, "window_item", lv, start, p)?;
        d.set_item(intern!(py, "item_id"), item_id)?;
        d.set_item(intern!(py, "category"), t.items.get(&item).and_then(|i| i.category.as_deref()))?;
        tallied_into(&d, row, &t.types)?;
        if t.rules.unseen_before.is_some() {
            d.set_item(&fields.unchecked, PySet::new(py, ["category"])?)?;
        }
        out.append((format!("window_item:{name}:{start}:{item_id}:p{p}"), d))?;
    }
    Ok(())
}

/// The users' and items' documents, as (id, document).
pub fn entities<'py>(py: Python<'py>, t: &Tally, _fields: &Fields, p: usize) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for (ix, u) in t.users.iter().enumerate() {
        let Some(u) = u else { continue };
        let user_id = t.user_ids.name(ix as u32);
        let d = PyDict::new(py);
        d.set_item(intern!(py, "kind"), "user")?;
        d.set_item(intern!(py, "user_id"), user_id)?;
        d.set_item(intern!(py, "partition"), p)?;
        d.set_item(intern!(py, "first_seen"), u.first_seen)?;
        d.set_item(intern!(py, "last_seen"), u.last_seen)?;
        d.set_item(intern!(py, "counts"), by_name(py, &u.counts, &t.types)?)?;
        d.set_item(intern!(py, "spent_cents"), u.spent_cents)?;
        d.set_item(intern!(py, "purchases"), u.purchases)?;
        d.set_item(intern!(py, "last_item"), u.last_item.map(|(_, i)| t.item_ids.name(i)))?;
        let hours = PyList::empty(py);
        let oldest = u.oldest_hour();
        for (&hour, row) in u.hours.range(oldest..) {
            let h = PyDict::new(py);
            h.set_item(intern!(py, "start"), hour)?;
            tallied_into(&h, row, &t.types)?;
            hours.append(h)?;
        }
        d.set_item(intern!(py, "hours"), hours)?;
        out.append((format!("user:{user_id}"), d))?;
    }
    for (&item, it) in &t.items {
        let item_id = t.item_ids.name(item);
        let d = PyDict::new(py);
        d.set_item(intern!(py, "kind"), "item")?;
        d.set_item(intern!(py, "item_id"), item_id)?;
        d.set_item(intern!(py, "category"), it.category.as_deref())?;
        d.set_item(intern!(py, "partition"), p)?;
        tallied_into(&d, &it.tally, &t.types)?;
        out.append((format!("item:{item_id}:p{p}"), d))?;
    }
    Ok(out)
}
