//! One local model shared by every caller in a thread (the JavaScript API, the router's local
//! route): it has one KV cache, so requests take turns, in the order they came. A turn is held
//! until it is dropped; abort reaches a running answer between tokens.

use std::cell::{Cell, Ref, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::LocalModel;
use super::{ApiError, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ErrorCode};
use crate::engine::gpu::Gpu;
use crate::engine::Placement;

/// A model, its queue of requests, and where it ran at the last step.
pub struct SharedModel {
    model: RefCell<LocalModel>,
    line: RefCell<Line>,
    placement: RefCell<Placement>,
    /// The GPU as of the last step, so it can be lost on purpose while a step runs.
    gpu: RefCell<Option<Gpu>>,
    /// Profiling started or stopped while a step ran (a GPU step holds the model across its
    /// readback): applied before the next step.
    profile_asked: Cell<Option<bool>>,
    /// The profile as of the last step, while one is kept.
    profile_seen: RefCell<Option<String>>,
}

/// Who waits for the model, first in line first.
#[derive(Default)]
struct Line {
    busy: bool,
    next: u64,
    waiting: VecDeque<(u64, Option<Waker>)>,
}

impl Line {
    fn wake_first(&mut self) {
        if let Some((_, Some(w))) = self.waiting.front_mut() {
            w.wake_by_ref();
        }
    }
}

impl SharedModel {
    pub fn new(model: LocalModel) -> Rc<Self> {
        let placement = model.placement();
        let gpu = model.gpu().cloned();
        Rc::new(Self {
            model: RefCell::new(model),
            line: RefCell::new(Line::default()),
            placement: RefCell::new(placement),
            gpu: RefCell::new(gpu),
            profile_asked: Cell::new(None),
            profile_seen: RefCell::new(None),
        })
    }

    /// Waits until every request that came before has finished, then holds the model.
    pub fn turn(self: &Rc<Self>) -> Waiting {
        let mut line = self.line.borrow_mut();
        let ticket = line.next;
        line.next += 1;
        line.waiting.push_back((ticket, None));
        Waiting {
            shared: Some(self.clone()),
            ticket,
        }
    }

    /// The model while no step runs (a step holds it across a GPU readback): its id, its
    /// tokenizer, a request's prompt length. None while a step runs.
    pub fn model(&self) -> Option<Ref<'_, LocalModel>> {
        self.model.try_borrow().ok()
    }

    /// The step profile ([`LocalModel::profile`]). While a step runs, a start or stop waits for
    /// the step's end, and a read (or stop) gets the profile as of the last step.
    pub fn profile(&self, on: Option<bool>) -> Option<String> {
        match self.model.try_borrow_mut() {
            Ok(mut model) => {
                let json = model.profile(on);
                *self.profile_seen.borrow_mut() = model.profile(None);
                json
            }
            Err(_) => {
                if on.is_some() {
                    self.profile_asked.set(on);
                }
                match on {
                    Some(true) => None,
                    _ => self.profile_seen.borrow().clone(),
                }
            }
        }
    }

    /// Where the model ran at its last step: `auto` moves it to the CPU when the GPU fails.
    pub fn placement(&self) -> Placement {
        self.placement.borrow().clone()
    }

    /// Destroys the GPU device as a driver reset would (an app testing its fallback); false when
    /// the model is not on the GPU.
    pub fn lose_device(&self) -> bool {
        match self.gpu.borrow().as_ref() {
            Some(gpu) => {
                gpu.lose();
                true
            }
            None => false,
        }
    }

    /// Applies a profile start or stop asked for during the last step.
    fn asked(&self, model: &mut LocalModel) {
        if let Some(on) = self.profile_asked.take() {
            model.profile(Some(on));
        }
    }

    /// Notes where the model runs after a step, and its profile.
    fn noted(&self, model: &mut LocalModel) {
        *self.placement.borrow_mut() = model.placement();
        *self.gpu.borrow_mut() = model.gpu().cloned();
        *self.profile_seen.borrow_mut() = model.profile(None);
    }

    fn release(&self) {
        let mut line = self.line.borrow_mut();
        line.busy = false;
        line.wake_first();
    }
}

/// A place in the model's line; resolves to the [`Turn`].
pub struct Waiting {
    shared: Option<Rc<SharedModel>>,
    ticket: u64,
}

impl Future for Waiting {
    type Output = Turn;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn> {
        let shared = self.shared.clone().expect("polled after it resolved");
        let mut line = shared.line.borrow_mut();
        let first = line.waiting.front().is_some_and(|(t, _)| *t == self.ticket);
        if first && !line.busy {
            line.waiting.pop_front();
            line.busy = true;
            drop(line);
            self.shared = None;
            return Poll::Ready(Turn {
                shared,
                aborted: Cell::new(false),
            });
        }
        if let Some(entry) = line.waiting.iter_mut().find(|(t, _)| *t == self.ticket) {
            entry.1 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Waiting {
    /// Leaving the line before its turn came: the next in line moves up.
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut line = shared.line.borrow_mut();
            line.waiting.retain(|(t, _)| *t != self.ticket);
            if !line.busy {
                line.wake_first();
            }
        }
    }
}

/// The model, held for one request until dropped.
pub struct Turn {
    shared: Rc<SharedModel>,
    aborted: Cell<bool>,
}

// A turn holds the model across the GPU readback of its step on purpose: the line keeps other
// requests out, and readers that cannot wait (`SharedModel::model`) see None, never a panic.
#[allow(clippy::await_holding_refcell_ref)]
impl Turn {
    /// Checks `req`, renders its prompt and runs it; `id` and `created` label every chunk.
    pub async fn start(
        &self,
        req: ChatCompletionRequest,
        id: String,
        created: u64,
    ) -> Result<(), ApiError> {
        let mut model = self.shared.model.try_borrow_mut().map_err(|_| in_step())?;
        self.shared.asked(&mut model);
        let started = model.start(req, id, created).await;
        self.shared.noted(&mut model);
        Ok(started?)
    }

    /// Advances the answer by one token: its chunks, or None once it is over.
    pub async fn step(&self) -> Result<Option<Vec<ChatCompletionChunk>>, ApiError> {
        let mut model = self.shared.model.try_borrow_mut().map_err(|_| in_step())?;
        if self.aborted.get() {
            model.abort();
        }
        self.shared.asked(&mut model);
        let step = model.step().await;
        self.shared.noted(&mut model);
        Ok(step?)
    }

    /// Ends the answer at the next step (callable while a step runs).
    pub fn abort(&self) {
        self.aborted.set(true);
        if let Ok(mut model) = self.shared.model.try_borrow_mut() {
            model.abort();
        }
    }

    /// The model between steps.
    pub fn model(&self) -> Option<Ref<'_, LocalModel>> {
        self.shared.model()
    }

    pub fn is_finished(&self) -> bool {
        self.model().is_some_and(|m| m.is_finished())
    }

    /// The whole answer, once finished.
    pub fn response(&self) -> Option<ChatCompletion> {
        self.model()?.response()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.shared.release();
    }
}

fn in_step() -> ApiError {
    ApiError::new(ErrorCode::Busy, "a step of this answer is already running")
}
