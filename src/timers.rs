//! The timer heap behind `call_later`/`call_at`: a binary min-heap keyed by (deadline,
//! scheduling order), so timers fire by deadline and ties fire in the order they were made.
//!
//! Cancelling a timer only flags it (O(1)); flagged entries are dropped lazily when they reach
//! the top, and the whole heap is rebuilt without them once they are most of it, as stock
//! asyncio does, so 100k cancelled timers cost one O(n) pass, not 100k O(log n) removals.
//! Rust because it is touched once per timer: push, pop and the cancelled-entry bookkeeping.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

/// Below this many entries, cancelled timers are not worth a rebuild.
const MIN_ENTRIES_TO_COMPACT: usize = 100;

pub trait Timer {
    fn is_cancelled(&self) -> bool;
    /// Called when the heap lets go of the timer (fired or dropped), so that a later
    /// `cancel()` no longer counts it as a cancelled entry still in the heap.
    fn unschedule(&self);
}

struct Entry<T> {
    when: f64,
    seq: u64,
    timer: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest deadline must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    /// Cancelled timers still in the heap; handles increment it from `cancel()`.
    cancelled: Arc<AtomicUsize>,
}

impl<T: Timer> TimerHeap<T> {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
            cancelled: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The counter a timer's `cancel()` increments while the timer is in this heap.
    pub fn cancel_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.cancelled)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn cancelled_len(&self) -> usize {
        self.cancelled.load(AtomicOrdering::Relaxed)
    }

    pub fn push(&mut self, when: f64, timer: T) {
        // DEVIATION: a NaN deadline (`call_later(math.nan)`) is due at once. asyncio runs such
        // a timer once it reaches the top of its heap (NaN compares false with everything),
        // which is the next iteration when nothing earlier is pending; `total_cmp` would sort
        // it after infinity, so it would never run.
        let when = if when.is_nan() {
            f64::NEG_INFINITY
        } else {
            when
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, timer });
    }

    fn forget_cancelled(&self, n: usize) {
        let left = self.cancelled_len().saturating_sub(n);
        self.cancelled.store(left, AtomicOrdering::Relaxed);
    }

    /// Drops cancelled timers: all of them if they are most of the heap, else those on top.
    /// Returns the deadline of the earliest live timer. Dropped timers go to `garbage` so the
    /// caller can release them outside any borrow (releasing may run Python code).
    pub fn purge(&mut self, garbage: &mut Vec<T>) -> Option<f64> {
        let cancelled = self.cancelled_len();
        if self.heap.len() > MIN_ENTRIES_TO_COMPACT && cancelled * 2 > self.heap.len() {
            let entries = std::mem::take(&mut self.heap).into_vec();
            let mut live = Vec::with_capacity(entries.len() - cancelled.min(entries.len()));
            for entry in entries {
                if entry.timer.is_cancelled() {
                    entry.timer.unschedule();
                    garbage.push(entry.timer);
                } else {
                    live.push(entry);
                }
            }
            self.heap = BinaryHeap::from(live);
            self.cancelled.store(0, AtomicOrdering::Relaxed);
        } else {
            let before = garbage.len();
            while self.heap.peek().is_some_and(|e| e.timer.is_cancelled()) {
                if let Some(entry) = self.heap.pop() {
                    entry.timer.unschedule();
                    garbage.push(entry.timer);
                }
            }
            self.forget_cancelled(garbage.len() - before);
        }
        self.heap.peek().map(|e| e.when)
    }

    /// Moves every timer due before `end` to `due`, in firing order. Cancelled ones go to
    /// `garbage` instead.
    pub fn pop_due(&mut self, end: f64, due: &mut impl FnMut(T), garbage: &mut Vec<T>) -> usize {
        let mut fired = 0;
        while self.heap.peek().is_some_and(|e| e.when < end) {
            let Some(entry) = self.heap.pop() else { break };
            entry.timer.unschedule();
            if entry.timer.is_cancelled() {
                self.forget_cancelled(1);
                garbage.push(entry.timer);
            } else {
                fired += 1;
                due(entry.timer);
            }
        }
        fired
    }

    /// The timers in no particular order (for the loop's `__traverse__`).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|entry| &entry.timer)
    }

    /// Empties the heap (loop close), handing every timer to `garbage`.
    pub fn drain(&mut self, garbage: &mut Vec<T>) {
        for entry in std::mem::take(&mut self.heap).into_vec() {
            entry.timer.unschedule();
            garbage.push(entry.timer);
        }
        self.cancelled.store(0, AtomicOrdering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    struct FakeTimer {
        id: u32,
        cancelled: Rc<Cell<bool>>,
    }

    impl Timer for FakeTimer {
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
        fn unschedule(&self) {}
    }

    fn timer(id: u32) -> (FakeTimer, Rc<Cell<bool>>) {
        let flag = Rc::new(Cell::new(false));
        (
            FakeTimer {
                id,
                cancelled: Rc::clone(&flag),
            },
            flag,
        )
    }

    fn fire_all(heap: &mut TimerHeap<FakeTimer>, end: f64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut garbage = Vec::new();
        heap.pop_due(end, &mut |t: FakeTimer| out.push(t.id), &mut garbage);
        out
    }

    #[test]
    fn fires_by_deadline_then_scheduling_order() {
        let mut heap = TimerHeap::new();
        for (id, when) in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 1.0), (5, 2.0)] {
            heap.push(when, timer(id).0);
        }
        assert_eq!(fire_all(&mut heap, 10.0), vec![2, 4, 3, 5, 1]);
    }

    #[test]
    fn only_due_timers_fire() {
        let mut heap = TimerHeap::new();
        heap.push(1.0, timer(1).0);
        heap.push(5.0, timer(2).0);
        assert_eq!(fire_all(&mut heap, 2.0), vec![1]);
        assert_eq!(heap.len(), 1);
    }

    #[test]
    fn cancelled_timers_do_not_fire() {
        let mut heap = TimerHeap::new();
        let (t1, c1) = timer(1);
        heap.push(1.0, t1);
        heap.push(2.0, timer(2).0);
        c1.set(true);
        heap.cancel_counter().fetch_add(1, AtomicOrdering::Relaxed);
        let mut garbage = Vec::new();
        assert_eq!(heap.purge(&mut garbage), Some(2.0));
        assert_eq!(garbage.len(), 1);
        assert_eq!(heap.cancelled_len(), 0);
        assert_eq!(fire_all(&mut heap, 10.0), vec![2]);
    }

    #[test]
    fn compacts_when_most_timers_are_cancelled() {
        let mut heap = TimerHeap::new();
        let mut flags = Vec::new();
        for i in 0..1000 {
            let (t, c) = timer(i);
            heap.push(f64::from(i), t);
            flags.push(c);
        }
        // Cancel the later 600: none is on top, so only a compaction can drop them.
        for flag in &flags[400..] {
            flag.set(true);
            heap.cancel_counter().fetch_add(1, AtomicOrdering::Relaxed);
        }
        let mut garbage = Vec::new();
        assert_eq!(heap.purge(&mut garbage), Some(0.0));
        assert_eq!(garbage.len(), 600);
        assert_eq!(heap.len(), 400);
        assert_eq!(heap.cancelled_len(), 0);
        assert_eq!(fire_all(&mut heap, 1e9), (0..400).collect::<Vec<_>>());
    }

    #[test]
    fn small_heaps_are_not_compacted() {
        let mut heap = TimerHeap::new();
        let mut flags = Vec::new();
        for i in 0..10 {
            let (t, c) = timer(i);
            heap.push(f64::from(i), t);
            flags.push(c);
        }
        for flag in &flags[5..] {
            flag.set(true);
            heap.cancel_counter().fetch_add(1, AtomicOrdering::Relaxed);
        }
        let mut garbage = Vec::new();
        heap.purge(&mut garbage);
        assert!(garbage.is_empty());
        assert_eq!(heap.len(), 10);
        assert_eq!(fire_all(&mut heap, 1e9), vec![0, 1, 2, 3, 4]);
    }
}
