//! The local route when the engine runs in the router's own thread (an engine the service
//! worker hosts): the model answers a try as a provider would, without a byte in between. An
//! error is its status and OpenAI-shaped body, a whole answer one value, a stream chunk values
//! and then `Done`; a step that fails mid-stream is a cut stream, continued on the next route.
//! The route's deadlines do not apply: an engine in this thread cannot fall silent the way a
//! closed page or a network can, and a step is never stopped halfway.

use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::Value;

use super::transport::{Head, Piece, Reply};
use crate::openai::{ApiError, ChatCompletionRequest, SharedModel, Turn};

pub struct EngineReply {
    head: Head,
    /// Held while a stream runs.
    turn: Option<Turn>,
    pending: VecDeque<Piece>,
}

fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl EngineReply {
    /// Waits for the model's turn and runs `body`'s prompt; an answer that is not streamed is
    /// generated whole here. `id` and `created` label the answer.
    pub async fn start(model: &Rc<SharedModel>, body: &Value, id: String, created: u64) -> Self {
        let request: ChatCompletionRequest = match serde_json::from_value(body.clone()) {
            Ok(r) => r,
            Err(e) => return Self::failed(ApiError::invalid(e.to_string())),
        };
        let stream = request.stream;
        let turn = model.turn().await;
        if let Err(e) = turn.start(request, id, created).await {
            return Self::failed(e);
        }
        let head = |event_stream| Head {
            status: 200,
            retry_after: None,
            event_stream,
        };
        if stream {
            return Self {
                head: head(true),
                turn: Some(turn),
                pending: VecDeque::new(),
            };
        }
        loop {
            match turn.step().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Self::failed(e),
            }
        }
        let answer = turn.response().map(|r| value(&r)).unwrap_or(Value::Null);
        Self {
            head: head(false),
            turn: None,
            pending: VecDeque::from([Piece::Json(answer), Piece::End]),
        }
    }

    fn failed(e: ApiError) -> Self {
        Self {
            head: Head {
                status: e.status(),
                retry_after: None,
                event_stream: false,
            },
            turn: None,
            pending: VecDeque::from([Piece::Json(e.body()), Piece::End]),
        }
    }
}

impl Reply for EngineReply {
    fn head(&self) -> &Head {
        &self.head
    }

    async fn next(&mut self, _within_ms: f64) -> Piece {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return piece;
            }
            let Some(turn) = &self.turn else {
                return Piece::End;
            };
            match turn.step().await {
                Ok(Some(chunks)) => self
                    .pending
                    .extend(chunks.iter().map(|c| Piece::Json(value(c)))),
                Ok(None) => {
                    self.turn = None;
                    return Piece::Done;
                }
                Err(_) => {
                    self.turn = None;
                    return Piece::Cut;
                }
            }
        }
    }

    fn cancel(&mut self) {
        if let Some(turn) = self.turn.take() {
            turn.abort();
        }
    }
}
