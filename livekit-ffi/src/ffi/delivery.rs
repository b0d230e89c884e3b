//! Event delivery: the core's threads hand serialized `FfiEvent`s to a queue and never
//! wait; one delivery thread of our own drains it into the client's sink.
//!
//! The sink may block for as long as its client likes (the Python sink waits for the
//! GIL, a C callback may do anything): only the delivery thread waits then, while the
//! runtime keeps signaling, ICE, DTLS and SCTP going. The queue is bounded in bytes;
//! past the bound, droppable events (lossy data, later media frames) are dropped and
//! counted, and everything else is kept so that no reliable data is ever lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::{Condvar, Mutex};

use super::{BatchSink, EventSink};

/// Most events handed to the sink in one call: bounds how long a client's lock (the
/// GIL) is held for one batch.
const MAX_BATCH: usize = 64;

/// Default byte bound of undelivered events: a busy room (a few Mbit/s of data)
/// for 30 s with the client stalled.
pub const DEFAULT_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// Whether an event may be dropped when the client falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Callbacks, room and participant events, reliable data: never dropped.
    Keep,
    /// Lossy data (and later media frames): dropped past the bound, counted.
    Droppable,
}

/// The events of one delivery, handed out in order while the sink that got them is
/// still the current one.
pub struct Batch<'a> {
    events: &'a mut VecDeque<Vec<u8>>,
    generation: u64,
    current: &'a AtomicU64,
    taken: u64,
}

impl Iterator for Batch<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.current.load(Ordering::SeqCst) != self.generation {
            return None;
        }
        let event = self.events.pop_front()?;
        self.taken += 1;
        Some(event)
    }
}

struct State {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    bound: usize,
    sink: Option<BatchSink>,
    /// The delivery thread is inside the sink right now.
    delivering: bool,
    /// Events dropped since the last warning about it.
    dropped_unreported: u64,
    thread_started: bool,
}

pub(crate) struct Delivery {
    state: Mutex<State>,
    /// Counts sink replacements: a batch stops handing out events once its sink has
    /// been replaced, and what it did not hand out goes to the new sink.
    generation: AtomicU64,
    /// Wakes the delivery thread (new event) and `close` (a delivery ended).
    changed: Condvar,
    dropped: AtomicU64,
    delivered: AtomicU64,
    thread: Mutex<Option<ThreadId>>,
}

/// What the delivery queue holds right now, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStats {
    pub queued_events: usize,
    pub queued_bytes: usize,
    pub delivered: u64,
    pub dropped: u64,
}

impl Delivery {
    pub(crate) fn new() -> Self {
        let bound = std::env::var("LIVEKIT_EVENT_QUEUE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_QUEUE_BYTES);
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                bound,
                sink: None,
                delivering: false,
                dropped_unreported: 0,
                thread_started: false,
            }),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            thread: Mutex::new(None),
        }
    }

    /// Sets (or replaces) a sink that takes one event per call.
    pub(crate) fn open(self: &Arc<Self>, sink: EventSink) {
        self.open_batched(Arc::new(move |batch: &mut Batch<'_>| {
            for event in batch {
                sink(&event);
            }
        }));
    }

    /// Sets (or replaces) the sink. Never waits for a delivery under way, so a client
    /// may call it from inside its own callback or while holding its own locks.
    pub(crate) fn open_batched(self: &Arc<Self>, sink: BatchSink) {
        let start = {
            let mut st = self.state.lock();
            st.sink = Some(sink);
            self.generation.fetch_add(1, Ordering::SeqCst);
            !std::mem::replace(&mut st.thread_started, true)
        };
        if start {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("livekit-ffi-events".into())
                .spawn(move || me.run());
            if let Err(e) = spawned {
                self.state.lock().thread_started = false;
                log::error!("cannot start the event delivery thread: {e}");
            }
        }
        self.changed.notify_all();
    }

    /// Removes the sink and drops undelivered events; once it returns no callback runs
    /// (unless called from inside one, which cannot wait for itself).
    pub(crate) fn close(&self) {
        let on_delivery_thread = *self.thread.lock() == Some(std::thread::current().id());
        let mut st = self.state.lock();
        st.sink = None;
        st.queue.clear();
        st.bytes = 0;
        while st.delivering && !on_delivery_thread {
            self.changed.wait(&mut st);
        }
    }

    pub(crate) fn set_bound(&self, bytes: usize) {
        self.state.lock().bound = bytes.max(1);
    }

    /// Queues one event without ever blocking; `false` when it was dropped.
    pub(crate) fn push(&self, event: Vec<u8>, class: Class) -> bool {
        let report = {
            let mut st = self.state.lock();
            if st.sink.is_none() {
                return false;
            }
            if class == Class::Droppable && st.bytes + event.len() > st.bound {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                st.dropped_unreported += 1;
                // One warning per burst of drops, not one per event.
                (st.dropped_unreported == 1).then_some(st.bytes)
            } else {
                st.bytes += event.len();
                st.queue.push_back(event);
                self.changed.notify_all();
                return true;
            }
        };
        // Logged outside the lock: the log forwarder pushes into this very queue.
        if let Some(bytes) = report {
            log::warn!(
                "the client is {bytes} bytes of events behind: dropping lossy events until it catches up"
            );
        }
        false
    }

    pub fn stats(&self) -> DeliveryStats {
        let st = self.state.lock();
        DeliveryStats {
            queued_events: st.queue.len(),
            queued_bytes: st.bytes,
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn run(&self) {
        *self.thread.lock() = Some(std::thread::current().id());
        let mut batch: VecDeque<Vec<u8>> = VecDeque::with_capacity(MAX_BATCH);
        let mut st = self.state.lock();
        loop {
            if st.queue.is_empty() {
                self.changed.wait(&mut st);
                continue;
            }
            // Everything queued so far (up to a bound) goes in one call: a client that
            // takes a lock per call (the GIL) takes it once per burst.
            while batch.len() < MAX_BATCH {
                let Some(event) = st.queue.pop_front() else {
                    break;
                };
                st.bytes -= event.len();
                batch.push_back(event);
            }
            let generation = self.generation.load(Ordering::SeqCst);
            let Some(sink) = st.sink.clone() else {
                batch.clear();
                continue;
            };
            let caught_up = st.dropped_unreported > 0 && st.bytes < st.bound / 2;
            let dropped = if caught_up {
                std::mem::take(&mut st.dropped_unreported)
            } else {
                0
            };
            st.delivering = true;
            drop(st);
            if dropped > 0 {
                log::warn!("the client caught up; {dropped} lossy events were dropped");
            }
            let mut handed = Batch {
                events: &mut batch,
                generation,
                current: &self.generation,
                taken: 0,
            };
            // A panicking sink must not end delivery for good.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(&mut handed)));
            let taken = handed.taken;
            drop(sink);
            self.delivered.fetch_add(taken, Ordering::Relaxed);
            st = self.state.lock();
            // Events the sink did not take (it was replaced meanwhile) go first to
            // the next one, in order.
            while let Some(event) = batch.pop_back() {
                st.bytes += event.len();
                st.queue.push_front(event);
            }
            st.delivering = false;
            self.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn collecting() -> (Arc<Delivery>, mpsc::Receiver<Vec<u8>>) {
        let d = Arc::new(Delivery::new());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        d.open(Arc::new(move |b: &[u8]| {
            let _ = tx.lock().send(b.to_vec());
        }));
        (d, rx)
    }

    #[test]
    fn a_blocked_sink_never_blocks_the_producer() {
        let d = Arc::new(Delivery::new());
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let (out_tx, out_rx) = mpsc::channel();
        let out_tx = Mutex::new(out_tx);
        d.open(Arc::new(move |b: &[u8]| {
            // The first event blocks until the test lets it go, as a held GIL would.
            if b == b"0" {
                let _ = gate_rx.lock().recv();
            }
            let _ = out_tx.lock().send(b.to_vec());
        }));
        let started = std::time::Instant::now();
        for i in 0..10_000 {
            assert!(d.push(i.to_string().into_bytes(), Class::Keep));
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        gate_tx.send(()).unwrap();
        let got: Vec<_> = (0..10_000)
            .map(|_| out_rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        let want: Vec<_> = (0..10_000).map(|i| i.to_string().into_bytes()).collect();
        assert_eq!(got, want, "every event once, in order");
        d.close();
    }

    #[test]
    fn past_the_bound_only_droppable_events_are_dropped() {
        let d = Arc::new(Delivery::new());
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let (out_tx, out_rx) = mpsc::channel();
        let out_tx = Mutex::new(out_tx);
        d.set_bound(100);
        d.open(Arc::new(move |b: &[u8]| {
            if b[0] == b'g' {
                let _ = gate_rx.lock().recv();
            }
            let _ = out_tx.lock().send(b.to_vec());
        }));
        assert!(d.push(b"g".to_vec(), Class::Keep));
        // Wait for the gate event to be taken so the queue is empty but stalled.
        while d.stats().queued_events > 0 {
            std::thread::yield_now();
        }
        for _ in 0..5 {
            assert!(d.push(vec![b'k'; 40], Class::Keep));
        }
        assert!(!d.push(vec![b'l'; 10], Class::Droppable));
        assert_eq!(d.stats().dropped, 1);
        assert_eq!(d.stats().queued_bytes, 200);
        gate_tx.send(()).unwrap();
        let got: Vec<_> = (0..6)
            .map(|_| out_rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert!(got[1..].iter().all(|e| e[0] == b'k'));
        assert!(d.push(vec![b'l'; 10], Class::Droppable), "room again");
        assert_eq!(
            out_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            vec![b'l'; 10]
        );
        d.close();
    }

    #[test]
    fn a_batch_sink_takes_bursts_in_order() {
        let d = Arc::new(Delivery::new());
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let (out_tx, out_rx) = mpsc::channel::<Vec<Vec<u8>>>();
        let out_tx = Mutex::new(out_tx);
        d.open_batched(Arc::new(move |batch: &mut Batch<'_>| {
            let events: Vec<_> = batch.collect();
            if events.first().map(Vec::as_slice) == Some(b"gate") {
                let _ = gate_rx.lock().recv();
            }
            let _ = out_tx.lock().send(events);
        }));
        assert!(d.push(b"gate".to_vec(), Class::Keep));
        while d.stats().queued_events > 0 {
            std::thread::yield_now();
        }
        // Queued while the sink is busy: handed over together, at most MAX_BATCH at once.
        for i in 0..100 {
            assert!(d.push(i.to_string().into_bytes(), Class::Keep));
        }
        gate_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < 101 {
            let batch = out_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(batch.len() <= MAX_BATCH);
            got.extend(batch);
            calls += 1;
        }
        assert!(calls <= 4, "101 events in {calls} calls");
        let want: Vec<_> = std::iter::once(b"gate".to_vec())
            .chain((0..100).map(|i| i.to_string().into_bytes()))
            .collect();
        assert_eq!(got, want);
        // Counted once the sink has returned.
        let started = std::time::Instant::now();
        while d.stats().delivered < 101 && started.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert_eq!(d.stats().delivered, 101);
        d.close();
    }

    #[test]
    fn a_second_open_while_the_sink_is_stuck_returns_at_once() {
        // A client thread re-initializes while holding what the sink waits for (as
        // Python does with the GIL): it must not wait for the delivery under way.
        let d = Arc::new(Delivery::new());
        let held = Arc::new(Mutex::new(()));
        let guard = held.lock();
        let (entered_tx, entered_rx) = mpsc::channel();
        let entered_tx = Mutex::new(entered_tx);
        let waits_for = held.clone();
        d.open(Arc::new(move |_: &[u8]| {
            let _ = entered_tx.lock().send(());
            drop(waits_for.lock());
        }));
        assert!(d.push(b"stuck".to_vec(), Class::Keep));
        entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let started = std::time::Instant::now();
        d.open(Arc::new(move |b: &[u8]| {
            let _ = tx.lock().send(b.to_vec());
        }));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(d.push(b"next".to_vec(), Class::Keep));
        drop(guard);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            b"next".to_vec()
        );
        d.close();
    }

    #[test]
    fn reopening_inside_a_callback_does_not_deadlock() {
        let (d, rx) = collecting();
        let again = d.clone();
        let (tx2, rx2) = mpsc::channel();
        let tx2 = Mutex::new(tx2);
        let inner = Arc::new(move |b: &[u8]| {
            let _ = tx2.lock().send(b.to_vec());
        });
        let reopen = Mutex::new(Some(inner));
        d.open(Arc::new(move |_: &[u8]| {
            if let Some(sink) = reopen.lock().take() {
                again.open(sink);
            }
        }));
        assert!(d.push(b"first".to_vec(), Class::Keep));
        assert!(d.push(b"second".to_vec(), Class::Keep));
        assert_eq!(
            rx2.recv_timeout(Duration::from_secs(5)).unwrap(),
            b"second".to_vec()
        );
        assert!(rx.try_recv().is_err());
        d.close();
        assert!(!d.push(b"late".to_vec(), Class::Keep), "closed");
    }
}
