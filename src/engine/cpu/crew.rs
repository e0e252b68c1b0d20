//! The step's crew: while a forward step runs, the pool's other threads spin waiting for the next
//! parallel region (a group of matrix products, a prefill's attention) instead of going back to
//! sleep after each. Waking a sleeping thread costs tens of microseconds natively and more in a
//! browser (`Atomics.notify`, then the worker's scheduling), and a 0.5B decode step has ~100
//! regions; llama.cpp's thread pool spins between its graph's nodes for the same reason. The step
//! wakes the pool once, to hand each other thread its `help` loop.
//!
//! A region publishes its tasks under a new generation; every thread claims task indices from one
//! atomic (generation, next index) word, so a thread still holding an older generation's work can
//! never claim a newer one's task; the region returns when all its tasks finished.

// The single-thread wasm build leads no crew: `for_each` hands every region back.
#![cfg_attr(
    all(target_arch = "wasm32", not(feature = "threads")),
    allow(dead_code)
)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A region's tasks: `task(i)` for i in 0..n, each run once.
type Work = dyn Fn(usize) + Sync;

/// A region's work as the crew holds it: lifetime erased, valid while its generation runs.
#[derive(Clone, Copy)]
struct Published(*const Work);

// SAFETY: the pointee is Sync, and `Crew::run` keeps it alive until every task claimed under its
// generation has finished.
unsafe impl Send for Published {}

pub(super) struct Crew {
    /// Generation in the high 32 bits, the next unclaimed task index in the low 32.
    claims: AtomicU64,
    /// Tasks in the current generation, and the work itself.
    current: Mutex<(u32, usize, Option<Published>)>,
    finished: AtomicUsize,
    stop: AtomicBool,
}

/// Tasks run by helpers rather than leaders, for tests to see that the crew shares the work.
#[cfg(test)]
pub(crate) static HELPED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The crew of the step this thread leads, if it leads one.
    static LEADING: Cell<Option<*const Crew>> = const { Cell::new(None) };
}

impl Crew {
    fn new() -> Self {
        Self {
            claims: AtomicU64::new(0),
            current: Mutex::new((0, 0, None)),
            finished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Runs `f` on this thread as the step's leader: parallel regions inside it go to this crew.
    /// Then lets the helpers go.
    pub fn lead<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = LEADING.with(|l| l.replace(Some(self as *const Crew)));
        // Also when `f` panics: the helpers must stop for the panic to leave the pool's scope.
        let _leading = Leading(self, before);
        f()
    }

    /// A helper's loop: claims and runs tasks of each region until the leader lets it go.
    pub fn help(&self) {
        // The generation last looked up, and its work when it had any.
        let (mut seen, mut held) = (0u32, None::<(usize, Published)>);
        while !self.stop.load(Ordering::Acquire) {
            let state = self.claims.load(Ordering::Acquire);
            let generation = (state >> 32) as u32;
            if generation != seen {
                seen = generation;
                held = match *self.current.lock().unwrap_or_else(|e| e.into_inner()) {
                    (g, n, Some(work)) if g == generation => Some((n, work)),
                    _ => None,
                };
            }
            match held {
                Some((n, work)) if ((state as u32) as usize) < n => {
                    if self.claim(state) {
                        let _done = Done(&self.finished);
                        #[cfg(test)]
                        HELPED.fetch_add(1, Ordering::Relaxed);
                        // SAFETY: the claim succeeded under this generation, so one of its tasks
                        // is unfinished and the leader still holds the work.
                        unsafe { (*work.0)(state as u32 as usize) };
                    }
                }
                _ => std::hint::spin_loop(),
            }
        }
    }

    fn claim(&self, state: u64) -> bool {
        self.claims
            .compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Runs `task(i)` for every i in 0..n on the crew and this thread; returns when all are done.
    fn run<'w>(&self, n: usize, task: &'w (dyn Fn(usize) + Sync + 'w)) {
        let generation = ((self.claims.load(Ordering::Relaxed) >> 32) as u32).wrapping_add(1);
        // SAFETY: the work outlives every use: this function returns only after all n tasks of
        // this generation finished, and no thread claims a task of it after that.
        let work: &'static Work =
            unsafe { std::mem::transmute::<&'w (dyn Fn(usize) + Sync + 'w), &'static Work>(task) };
        self.finished.store(0, Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            (generation, n, Some(Published(work)));
        self.claims
            .store((generation as u64) << 32, Ordering::Release);
        // Waits for every claimed task when this returns, also by a panic: they run `task`,
        // which lives in the caller's frame.
        let _region = Region(self, generation, n);
        loop {
            let state = self.claims.load(Ordering::Acquire);
            let i = (state as u32) as usize;
            if i >= n {
                break;
            }
            if self.claim(state) {
                let _done = Done(&self.finished);
                task(i);
            }
        }
    }
}

/// Counts a claimed task as finished when dropped: after it ran, or when it panicked.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A running region (crew, generation, task count): when dropped, closes it to new claims and
/// waits until every task claimed so far has finished.
struct Region<'a>(&'a Crew, u32, usize);

impl Drop for Region<'_> {
    fn drop(&mut self) {
        let Region(crew, generation, n) = *self;
        let closed = crew
            .claims
            .swap(((generation as u64) << 32) | n as u64, Ordering::AcqRel);
        let claimed = ((closed as u32) as usize).min(n);
        while crew.finished.load(Ordering::Acquire) < claimed {
            std::hint::spin_loop();
        }
    }
}

/// The leader's mark (its crew, and what this thread led before): when dropped, restores that
/// and lets the helpers go.
struct Leading<'a>(&'a Crew, Option<*const Crew>);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        LEADING.with(|l| l.set(self.1));
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Runs `f` on every item, each once, across the crew of the step this thread leads; hands the
/// items back when it leads none.
pub(super) fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) -> Result<(), Vec<T>> {
    let Some(crew) = LEADING.with(Cell::get) else {
        return Err(items);
    };
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let task = |i: usize| {
        let item = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(item) = item {
            f(item);
        }
    };
    // SAFETY: `lead` set this for the duration of its `f`, which this call is inside.
    unsafe { (*crew).run(slots.len(), &task) };
    Ok(())
}

/// Runs a forward step `f` on a thread of the current pool, leading a crew of the pool's other
/// threads: the caller waits for the pool once per step, and the pool's threads stay awake
/// between the step's parallel regions. With one thread, or inside a step, runs it here.
pub(crate) fn step<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if LEADING.with(Cell::get).is_none() && rayon::current_num_threads() > 1 {
        let crew = Crew::new();
        let mut out = None;
        // A scope runs its body on a pool thread (this one, if it is one); the helpers go to the
        // others (or, when none took one before the step ended, return at once).
        rayon::scope(|s| {
            for _ in 1..rayon::current_num_threads() {
                s.spawn(|_| crew.help());
            }
            out = Some(crew.lead(f));
        });
        return out.expect("the scope ran its body");
    }
    f()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A thousand regions of every size from 0 to 40 tasks, led on a pool of three threads:
    /// every task runs exactly once per region, and each region's results are all there when it
    /// returns, whatever the helpers were doing; and the helpers do take tasks.
    #[test]
    fn every_task_of_every_region_runs_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let crew = Crew::new();
        let helped = AtomicUsize::new(0);
        let by_helpers = AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..2 {
                s.spawn(|_| {
                    helped.fetch_add(1, Ordering::Relaxed);
                    crew.help()
                });
            }
            crew.lead(|| {
                let leader = std::thread::current().id();
                for round in 0..1000usize {
                    let n = round % 41;
                    let mut out = vec![0usize; n];
                    let items: Vec<(usize, &mut usize)> = out.iter_mut().enumerate().collect();
                    for_each(items, |(i, o)| {
                        if std::thread::current().id() != leader {
                            by_helpers.fetch_add(1, Ordering::Relaxed);
                        }
                        // A few microseconds of work, so a helper can claim one before the
                        // leader has claimed them all.
                        let spins = std::hint::black_box(2000usize);
                        std::hint::black_box((0..spins).fold(i, |a, b| a ^ b));
                        *o += i * round + 1
                    })
                    .expect("leading a crew");
                    assert!(out.iter().enumerate().all(|(i, &o)| o == i * round + 1));
                }
            });
        });
        assert_eq!(helped.load(Ordering::Relaxed), 2);
        assert!(
            by_helpers.load(Ordering::Relaxed) > 0,
            "the helpers ran no task"
        );
        // Outside a crew the items come back untouched.
        assert_eq!(for_each(vec![1, 2], |_| panic!("no crew")), Err(vec![1, 2]));
    }

    /// A task that panics makes the step end with that panic rather than a hang: at once on the
    /// leader; at the step's end on a helper (the leader goes on without it).
    #[test]
    fn a_panicking_task_ends_the_step() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for bad in [0usize, 5, 39] {
            let ran = AtomicUsize::new(0);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| {
                    step(|| {
                        for round in 0..50usize {
                            let items: Vec<usize> = (0..40).collect();
                            for_each(items, |i| {
                                let spins = std::hint::black_box(2000usize);
                                std::hint::black_box((0..spins).fold(i, |a, b| a ^ b));
                                assert!(!(round == 10 && i == bad), "task {i} fails");
                                ran.fetch_add(1, Ordering::Relaxed);
                            })
                            .expect("leading a crew");
                        }
                    })
                })
            }));
            assert!(result.is_err(), "task {bad}'s panic reaches the caller");
            // Every task before the failing one's region ran; the failing one did not.
            let ran = ran.load(Ordering::Relaxed);
            assert!((400..50 * 40).contains(&ran), "task {bad}: {ran} tasks ran");
        }
    }
}
