//! Timer structures side by side (issue 4): `sundial-wheel` against `BinaryHeap` with
//! lazy (tombstone) and eager (indexed heap) cancel, tokio-util's `DelayQueue` on a
//! paused tokio clock, and `hierarchical_hash_wheel_timer` 1.4.
//!
//! Workload for N in {10^4, 10^5, 10^6}: deadlines uniform in 1..=60_000 ms, insert all,
//! cancel a random half, expire the rest advancing 1 ms at a time. Every criterion time
//! is reported **per operation** (the batch's time divided by its operation count), so
//! "expire" is ns per fired timer, "cancel" ns per cancel, "insert" ns per insert.
//!
//! Besides criterion, the binary prints a table of bytes per pending timer (measured in
//! a child process from the resident-set growth, so every structure's own allocations
//! count), the idle tick cost, and the per-tick p99.9 / max of the wheel's expire run.
//!
//! Reproduce: `cargo bench -p sundial-wheel --bench timers`
//! (`SUNDIAL_BENCH_SIZES=10000,100000` to pick sizes).

#![allow(missing_docs, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use hierarchical_hash_wheel_timer::wheels::cancellable::{
    CancellableTimerEntry, QuadWheelWithOverflow,
};
use sundial_wheel::{TimerKey, Wheel};

const SPAN_MS: u64 = 60_000;

// ----- workload ----------------------------------------------------------------------

/// SplitMix64: a tiny deterministic generator, so every structure sees the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Workload {
    deadlines: Vec<u64>,
    /// Indices of the timers to cancel (a random half, in random order).
    cancels: Vec<usize>,
}

impl Workload {
    fn new(n: usize) -> Self {
        let mut rng = Rng(n as u64 ^ 0x5eed);
        let deadlines = (0..n).map(|_| 1 + rng.next() % SPAN_MS).collect();
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        order.truncate(n / 2);
        Self {
            deadlines,
            cancels: order,
        }
    }
}

// ----- the structures behind one interface ----------------------------------------------

trait Timers {
    const NAME: &'static str;
    fn new(n: usize) -> Self;
    fn insert_all(&mut self, w: &Workload);
    fn cancel_some(&mut self, w: &Workload);
    /// Advances 1 ms at a time to `SPAN_MS`; returns the number fired.
    fn expire_all(&mut self) -> usize;
    /// One tick in which nothing fires.
    fn idle_tick(&mut self);
}

struct SundialWheel {
    wheel: Wheel<u32>,
    keys: Vec<TimerKey>,
    out: Vec<(TimerKey, u32)>,
}

impl Timers for SundialWheel {
    const NAME: &'static str = "sundial-wheel";
    fn new(n: usize) -> Self {
        Self {
            wheel: Wheel::with_capacity(n),
            keys: Vec::with_capacity(n),
            out: Vec::with_capacity(4096),
        }
    }
    fn insert_all(&mut self, w: &Workload) {
        for (i, &d) in w.deadlines.iter().enumerate() {
            self.keys.push(self.wheel.insert(d, i as u32));
        }
    }
    fn cancel_some(&mut self, w: &Workload) {
        for &i in &w.cancels {
            black_box(self.wheel.cancel(self.keys[i]));
        }
    }
    fn expire_all(&mut self) -> usize {
        let mut fired = 0;
        for t in 1..=SPAN_MS {
            self.out.clear();
            self.wheel.advance_to(t, &mut self.out);
            fired += self.out.len();
        }
        fired
    }
    fn idle_tick(&mut self) {
        let t = self.wheel.now() + 1;
        self.out.clear();
        self.wheel.advance_to(t, &mut self.out);
    }
}

/// `BinaryHeap` with lazy cancel: cancelled ids are marked and skipped when popped
/// (their memory is only reclaimed when their deadline passes).
struct HeapLazy {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    cancelled: Vec<bool>,
    now: u64,
}

impl Timers for HeapLazy {
    const NAME: &'static str = "binaryheap-tombstone";
    fn new(n: usize) -> Self {
        Self {
            heap: BinaryHeap::with_capacity(n),
            cancelled: Vec::with_capacity(n),
            now: 0,
        }
    }
    fn insert_all(&mut self, w: &Workload) {
        for (i, &d) in w.deadlines.iter().enumerate() {
            self.heap.push(Reverse((d, i as u32)));
            self.cancelled.push(false);
        }
    }
    fn cancel_some(&mut self, w: &Workload) {
        for &i in &w.cancels {
            self.cancelled[i] = true;
        }
    }
    fn expire_all(&mut self) -> usize {
        let mut fired = 0;
        for t in 1..=SPAN_MS {
            self.now = t;
            while let Some(&Reverse((d, id))) = self.heap.peek() {
                if d > t {
                    break;
                }
                self.heap.pop();
                if !self.cancelled[id as usize] {
                    fired += 1;
                    black_box(id);
                }
            }
        }
        fired
    }
    fn idle_tick(&mut self) {
        self.now += 1;
        if let Some(&Reverse((d, _))) = self.heap.peek() {
            black_box(d <= self.now);
        }
    }
}

/// A binary heap with a position index, so a cancel removes the entry at once
/// (`std::collections::BinaryHeap` cannot remove an arbitrary element: `retain` is O(n)).
struct HeapEager {
    heap: Vec<(u64, u32)>,
    pos: Vec<u32>,
    now: u64,
}

const GONE: u32 = u32::MAX;

impl HeapEager {
    fn set(&mut self, i: usize, e: (u64, u32)) {
        self.heap[i] = e;
        self.pos[e.1 as usize] = i as u32;
    }
    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let p = (i - 1) / 2;
            if self.heap[p].0 <= e.0 {
                break;
            }
            let pe = self.heap[p];
            self.set(i, pe);
            i = p;
        }
        self.set(i, e);
    }
    fn sift_down(&mut self, mut i: usize) {
        let e = self.heap[i];
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let c = if l + 1 < n && self.heap[l + 1].0 < self.heap[l].0 {
                l + 1
            } else {
                l
            };
            if self.heap[c].0 >= e.0 {
                break;
            }
            let ce = self.heap[c];
            self.set(i, ce);
            i = c;
        }
        self.set(i, e);
    }
    fn remove_at(&mut self, i: usize) -> (u64, u32) {
        let last = self.heap.pop().unwrap();
        if i == self.heap.len() {
            self.pos[last.1 as usize] = GONE;
            return last;
        }
        let removed = self.heap[i];
        self.pos[removed.1 as usize] = GONE;
        self.set(i, last);
        self.sift_down(i);
        self.sift_up(self.pos[last.1 as usize] as usize);
        removed
    }
}

impl Timers for HeapEager {
    const NAME: &'static str = "binaryheap-eager";
    fn new(n: usize) -> Self {
        Self {
            heap: Vec::with_capacity(n),
            pos: Vec::with_capacity(n),
            now: 0,
        }
    }
    fn insert_all(&mut self, w: &Workload) {
        for (i, &d) in w.deadlines.iter().enumerate() {
            self.heap.push((d, i as u32));
            self.pos.push((self.heap.len() - 1) as u32);
            let at = self.heap.len() - 1;
            self.sift_up(at);
        }
    }
    fn cancel_some(&mut self, w: &Workload) {
        for &i in &w.cancels {
            let p = self.pos[i];
            if p != GONE {
                black_box(self.remove_at(p as usize));
            }
        }
    }
    fn expire_all(&mut self) -> usize {
        let mut fired = 0;
        for t in 1..=SPAN_MS {
            self.now = t;
            while self.heap.first().is_some_and(|e| e.0 <= t) {
                black_box(self.remove_at(0));
                fired += 1;
            }
        }
        fired
    }
    fn idle_tick(&mut self) {
        self.now += 1;
        black_box(self.heap.first().is_some_and(|e| e.0 <= self.now));
    }
}

/// tokio-util's `DelayQueue`, driven on a paused current-thread runtime.
struct DelayQ {
    rt: tokio::runtime::Runtime,
    queue: tokio_util::time::DelayQueue<u32>,
    keys: Vec<tokio_util::time::delay_queue::Key>,
    start: tokio::time::Instant,
}

impl DelayQ {
    fn poll_all(&mut self) -> usize {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut fired = 0;
        let _guard = self.rt.enter();
        while let std::task::Poll::Ready(Some(e)) = self.queue.poll_expired(&mut cx) {
            black_box(e.into_inner());
            fired += 1;
        }
        fired
    }
    fn step(&mut self) -> usize {
        self.rt
            .block_on(tokio::time::advance(Duration::from_millis(1)));
        self.poll_all()
    }
}

impl Timers for DelayQ {
    const NAME: &'static str = "tokio-util-delayqueue";
    fn new(n: usize) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (queue, start) = rt.block_on(async {
            (
                tokio_util::time::DelayQueue::with_capacity(n),
                tokio::time::Instant::now(),
            )
        });
        Self {
            rt,
            queue,
            keys: Vec::with_capacity(n),
            start,
        }
    }
    fn insert_all(&mut self, w: &Workload) {
        let _guard = self.rt.enter();
        for (i, &d) in w.deadlines.iter().enumerate() {
            let at = self.start + Duration::from_millis(d);
            self.keys.push(self.queue.insert_at(i as u32, at));
        }
    }
    fn cancel_some(&mut self, w: &Workload) {
        let _guard = self.rt.enter();
        for &i in &w.cancels {
            black_box(self.queue.remove(&self.keys[i]));
        }
    }
    fn expire_all(&mut self) -> usize {
        let mut fired = 0;
        for _ in 1..=SPAN_MS {
            fired += self.step();
        }
        fired
    }
    fn idle_tick(&mut self) {
        black_box(self.step());
    }
}

#[derive(Debug)]
struct HEntry(u64);

impl CancellableTimerEntry for HEntry {
    type Id = u64;
    fn id(&self) -> &u64 {
        &self.0
    }
}

/// `hierarchical_hash_wheel_timer` 1.4, the cancellable quad wheel.
struct Hhwt {
    wheel: QuadWheelWithOverflow<HEntry>,
}

impl Timers for Hhwt {
    const NAME: &'static str = "hierarchical_hash_wheel_timer";
    fn new(_n: usize) -> Self {
        Self {
            wheel: QuadWheelWithOverflow::new(),
        }
    }
    fn insert_all(&mut self, w: &Workload) {
        for (i, &d) in w.deadlines.iter().enumerate() {
            let r = self
                .wheel
                .insert_ref_with_delay(Rc::new(HEntry(i as u64)), Duration::from_millis(d));
            assert!(r.is_ok());
        }
    }
    fn cancel_some(&mut self, w: &Workload) {
        for &i in &w.cancels {
            black_box(self.wheel.cancel(&(i as u64)).is_ok());
        }
    }
    fn expire_all(&mut self) -> usize {
        let mut fired = 0;
        for _ in 1..=SPAN_MS {
            fired += self.wheel.tick().len();
        }
        fired
    }
    fn idle_tick(&mut self) {
        black_box(self.wheel.tick());
    }
}

// ----- criterion --------------------------------------------------------------------

fn sizes() -> Vec<usize> {
    std::env::var("SUNDIAL_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}

/// Runs `measure` `iters` times on fresh structures and returns the time per op.
fn per_op<S: Timers>(
    iters: u64,
    n: usize,
    w: &Workload,
    ops: usize,
    mut measure: impl FnMut(&mut S, &Workload) -> Duration,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut s = S::new(n);
        total += measure(&mut s, w);
        drop(black_box(s));
    }
    total / ops.max(1) as u32
}

fn bench_one<S: Timers>(c: &mut Criterion, n: usize, w: &Workload) {
    let samples = 10;
    for (op, ops) in [
        ("insert", n),
        ("cancel", w.cancels.len()),
        ("expire", n - w.cancels.len()),
    ] {
        let mut g = c.benchmark_group(format!("timers/{op}"));
        g.sample_size(samples);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n >= 1_000_000 { 5 } else { 2 }));
        g.bench_with_input(BenchmarkId::new(S::NAME, n), &n, |b, &n| {
            b.iter_custom(|iters| {
                per_op::<S>(iters, n, w, ops, |s, w| match op {
                    "insert" => {
                        let t = Instant::now();
                        s.insert_all(w);
                        t.elapsed()
                    }
                    "cancel" => {
                        s.insert_all(w);
                        let t = Instant::now();
                        s.cancel_some(w);
                        t.elapsed()
                    }
                    _ => {
                        s.insert_all(w);
                        s.cancel_some(w);
                        let t = Instant::now();
                        let fired = s.expire_all();
                        let el = t.elapsed();
                        assert_eq!(fired, n - w.cancels.len(), "{} fired", S::NAME);
                        el
                    }
                })
            });
        });
        g.finish();
    }
}

fn bench_idle<S: Timers>(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers/idle_tick_empty");
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    g.bench_function(S::NAME, |b| {
        let mut s = S::new(16);
        b.iter(|| s.idle_tick());
    });
    g.finish();
}

fn timers(c: &mut Criterion) {
    for n in sizes() {
        let w = Workload::new(n);
        bench_one::<SundialWheel>(c, n, &w);
        bench_one::<HeapLazy>(c, n, &w);
        bench_one::<HeapEager>(c, n, &w);
        bench_one::<DelayQ>(c, n, &w);
        bench_one::<Hhwt>(c, n, &w);
    }
    bench_idle::<SundialWheel>(c);
    bench_idle::<HeapLazy>(c);
    bench_idle::<HeapEager>(c);
    bench_idle::<DelayQ>(c);
    bench_idle::<Hhwt>(c);
}

criterion_group!(benches, timers);

// ----- memory and tick-latency probes -----------------------------------------------

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// In a child process: resident-set growth per timer with all N pending (keys the
/// caller must keep for cancelling included), then after cancelling half, per timer
/// still pending (memory a structure does not give back shows up here).
fn memory_probe<S: Timers>(n: usize) -> (f64, f64) {
    let w = Workload::new(n);
    let before = rss_bytes();
    let mut s = S::new(n);
    s.insert_all(&w);
    let full = rss_bytes().saturating_sub(before) as f64 / n as f64;
    s.cancel_some(&w);
    let half = rss_bytes().saturating_sub(before) as f64 / (n - w.cancels.len()) as f64;
    black_box(&mut s);
    (full, half)
}

fn run_probe(name: &str, n: usize) -> Option<(f64, f64)> {
    let v = match name {
        SundialWheel::NAME => memory_probe::<SundialWheel>(n),
        HeapLazy::NAME => memory_probe::<HeapLazy>(n),
        HeapEager::NAME => memory_probe::<HeapEager>(n),
        DelayQ::NAME => memory_probe::<DelayQ>(n),
        Hhwt::NAME => memory_probe::<Hhwt>(n),
        _ => return None,
    };
    Some(v)
}

fn probes() {
    let names = [
        SundialWheel::NAME,
        HeapLazy::NAME,
        HeapEager::NAME,
        DelayQ::NAME,
        Hhwt::NAME,
    ];
    let exe = std::env::current_exe().unwrap();
    println!("\n== bytes per pending timer (RSS growth): all N pending | after cancelling N/2 ==");
    for n in sizes() {
        for name in names {
            let out = std::process::Command::new(&exe)
                .env("SUNDIAL_MEM_PROBE", format!("{name}:{n}"))
                .output();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            println!("memory {name:32} N={n:>8}: {text} B per pending timer");
        }
    }
    println!(
        "sundial-wheel entry sizes: Wheel<u32> {} B, Wheel<u64> {} B, key {} B",
        Wheel::<u32>::entry_size(),
        Wheel::<u64>::entry_size(),
        std::mem::size_of::<TimerKey>()
    );

    println!("\n== sundial-wheel per-tick latency during the expire run ==");
    for n in sizes() {
        let w = Workload::new(n);
        let mut s = SundialWheel::new(n);
        s.insert_all(&w);
        s.cancel_some(&w);
        let mut lat = Vec::with_capacity(SPAN_MS as usize);
        for t in 1..=SPAN_MS {
            s.out.clear();
            let t0 = Instant::now();
            s.wheel.advance_to(t, &mut s.out);
            lat.push(t0.elapsed().as_nanos() as u64);
        }
        lat.sort_unstable();
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "ticks N={n:>8}: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            q(0.5),
            q(0.99),
            q(0.999),
            lat[lat.len() - 1]
        );
        // Idle ticks with N/2 pending timers 60 s out (includes pre-cascade work).
        let mut wheel: Wheel<u32> = Wheel::with_capacity(n / 2);
        for (i, &d) in w.deadlines.iter().take(n / 2).enumerate() {
            wheel.insert(SPAN_MS + d, i as u32);
        }
        let mut out: Vec<(TimerKey, u32)> = Vec::new();
        let t0 = Instant::now();
        for t in 1..=SPAN_MS {
            wheel.advance_to(t, &mut out);
        }
        let per = t0.elapsed().as_nanos() as f64 / SPAN_MS as f64;
        assert!(out.is_empty());
        println!(
            "idle ticks with {} timers pending 60 s ahead: {per:.1} ns/tick",
            n / 2
        );
    }
}

fn main() {
    if let Ok(spec) = std::env::var("SUNDIAL_MEM_PROBE") {
        let (name, n) = spec.split_once(':').unwrap();
        let (full, half) = run_probe(name, n.parse().unwrap()).unwrap_or((f64::NAN, f64::NAN));
        println!("{full:.1} | {half:.1}");
        return;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        benches();
        return;
    }
    probes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
