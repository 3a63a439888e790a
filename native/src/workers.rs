//! Long-lived worker threads for the core's parallel work (routing batches, parsing, rendering flushes).
//!
//! A thread keeps its allocator heap for as long as it lives. Threads spawned for one batch and gone after it left
//! the pages holding what they had allocated into the state (users, sessions, ids) abandoned, to be reclaimed
//! piecemeal by other threads: the resident set stayed far above the state. These threads never exit; the pool
//! grows to the most tasks ever run at once (tasks may block on each other, see `batch::Gate`, so it never makes a
//! task wait for a free thread) and no further.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};

type Task = Box<dyn FnOnce() + Send + 'static>;
pub(crate) type Panic = Box<dyn Any + Send + 'static>;
/// A spawned task's result, or its panic, once it has finished.
pub(crate) type Pending<R> = Receiver<Result<R, Panic>>;

struct Queue {
    tasks: VecDeque<Task>,
    idle: usize, // threads waiting for a task
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { tasks: VecDeque::new(), idle: 0 });
static READY: Condvar = Condvar::new();

fn submit(task: Task) {
    let mut queue = QUEUE.lock().expect("worker queue lock");
    queue.tasks.push_back(task);
    // an idle thread counts until it has woken: at worst one thread too many starts, never one too few
    if queue.tasks.len() > queue.idle {
        drop(queue);
        std::thread::Builder::new().name("pulse-worker".into()).spawn(work).expect("cannot start a worker thread");
    } else {
        READY.notify_one();
    }
}

fn work() {
    loop {
        let task = {
            let mut queue = QUEUE.lock().expect("worker queue lock");
            loop {
                if let Some(task) = queue.tasks.pop_front() {
                    break task;
                }
                queue.idle += 1;
                queue = READY.wait(queue).expect("worker queue lock");
                queue.idle -= 1;
            }
        };
        task(); // tasks catch their own panics (see `spawn`, `each`)
    }
}

/// Run `task` on a worker; its result (or its panic) comes out of the receiver.
pub(crate) fn spawn<R: Send + 'static>(task: impl FnOnce() -> R + Send + 'static) -> Pending<R> {
    let (tx, rx) = sync_channel(1);
    submit(Box::new(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(task)));
    }));
    rx
}

/// Counts the borrowed tasks of one `each` still running.
struct Latch {
    left: Mutex<usize>,
    done: Condvar,
}

impl Latch {
    fn count_down(&self) {
        let mut left = self.left.lock().expect("latch lock");
        *left -= 1;
        if *left == 0 {
            self.done.notify_all();
        }
    }
    fn wait(&self) {
        let mut left = self.left.lock().expect("latch lock");
        while *left > 0 {
            left = self.done.wait(left).expect("latch lock");
        }
    }
}

/// `work` on every unit, all at once: the first on this thread, the others on workers; results in unit order.
/// Units and `work` may borrow from the caller: it returns (or unwinds) only once every unit has finished.
pub(crate) fn each<U: Send, R: Send>(units: Vec<U>, work: impl Fn(U) -> R + Sync) -> Vec<R> {
    let n = units.len();
    let mut results: Vec<Option<Result<R, Panic>>> = (0..n).map(|_| None).collect();
    let mut units = units.into_iter();
    let Some(first) = units.next() else { return Vec::new() };
    let latch = Arc::new(Latch { left: Mutex::new(n - 1), done: Condvar::new() });
    let work = &work;
    let (head, rest) = results.split_first_mut().expect("one unit at least");
    for (unit, slot) in units.zip(rest.iter_mut()) {
        let latch = latch.clone();
        let task: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            *slot = Some(catch_unwind(AssertUnwindSafe(|| work(unit))));
            latch.count_down();
        });
        // SAFETY: the task borrows `work`, `unit`'s contents and `slot` from this call, which waits below for the
        // latch, counted down only when the task has finished, before any of them goes out of scope (a panic in
        // the task is caught, and this thread's own unit runs under `catch_unwind` too)
        let task: Task = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Task>(task) };
        submit(task);
    }
    *head = Some(catch_unwind(AssertUnwindSafe(|| work(first))));
    latch.wait();
    results
        .into_iter()
        .map(|r| match r.expect("every unit ran") {
            Ok(r) => r,
            Err(panic) => resume_unwind(panic),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_keeps_unit_order_and_borrows() {
        let base = [10, 20, 30, 40, 50];
        let out = each((0..5).collect(), |i: usize| base[i] + i);
        assert_eq!(out, vec![10, 21, 32, 43, 54]);
    }

    #[test]
    fn each_runs_units_at_once_so_they_may_wait_on_each_other() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = each(vec![0, 1, 2], |i| {
            let (open, cv) = &*gate;
            if i == 2 {
                *open.lock().unwrap() = true;
                cv.notify_all();
            } else {
                let mut o = open.lock().unwrap();
                while !*o {
                    o = cv.wait(o).unwrap();
                }
            }
            i
        });
        assert_eq!(out, vec![0, 1, 2]);
    }

    #[test]
    fn a_panicking_unit_panics_the_caller_after_the_others_finished() {
        let finished = Arc::new(Mutex::new(0));
        let f = finished.clone();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            each(vec![0, 1, 2, 3], |i| {
                if i == 1 {
                    panic!("unit 1");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                *f.lock().unwrap() += 1;
            })
        }));
        assert!(caught.is_err());
        assert_eq!(*finished.lock().unwrap(), 3);
    }

    #[test]
    fn spawn_returns_the_result_and_threads_are_reused() {
        for i in 0..50 {
            assert_eq!(spawn(move || i * 2).recv().unwrap().unwrap(), i * 2);
        }
        assert!(spawn(|| panic!("boom")).recv().unwrap().is_err());
        let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
        assert!(threads < 20, "{threads} threads for sequential tasks");
    }
}
