//! A virtual clock with a small executor that moves it on when every task waits.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A virtual clock and the tasks that wait on it.
#[derive(Default)]
pub struct Sim {
    now: Cell<f64>,
    timers: RefCell<Vec<(f64, Waker)>>,
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl Sim {
    pub fn new() -> Rc<Sim> {
        let sim = Sim::default();
        sim.now.set(1_700_000_000_000.0);
        Rc::new(sim)
    }

    pub fn now(&self) -> f64 {
        self.now.get()
    }

    pub fn sleep(&self, ms: f64) -> Sleep<'_> {
        Sleep {
            sim: self,
            until: self.now() + ms.max(0.0),
        }
    }

    /// Runs `tasks` together to their ends; when every one waits and nothing woke, the clock
    /// jumps to the earliest timer.
    pub fn run<'a, T>(&self, mut tasks: Vec<Task<'a, T>>) -> Vec<T> {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out: Vec<Option<T>> = tasks.iter().map(|_| None).collect();
        loop {
            flag.0.store(false, Ordering::SeqCst);
            for (task, slot) in tasks.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    if let Poll::Ready(v) = task.as_mut().poll(&mut cx) {
                        *slot = Some(v);
                    }
                }
            }
            if out.iter().all(Option::is_some) {
                return out.into_iter().map(Option::unwrap).collect();
            }
            if flag.0.load(Ordering::SeqCst) {
                continue;
            }
            let mut timers = self.timers.borrow_mut();
            let next = timers.iter().map(|(t, _)| *t).fold(f64::INFINITY, f64::min);
            assert!(next.is_finite(), "every task waits and no timer is set");
            self.now.set(next.max(self.now()));
            let now = self.now();
            timers.retain(|(t, w)| {
                if *t <= now {
                    w.wake_by_ref();
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Runs one task.
    pub fn block_on<'a, T>(&self, task: impl Future<Output = T> + 'a) -> T {
        self.run(vec![Box::pin(task) as Task<'a, T>]).pop().unwrap()
    }
}

pub struct Sleep<'a> {
    sim: &'a Sim,
    until: f64,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sim.now() >= self.until {
            return Poll::Ready(());
        }
        self.sim
            .timers
            .borrow_mut()
            .push((self.until, cx.waker().clone()));
        Poll::Pending
    }
}
