//! An OpenAI-compatible provider that answers as DeepSeek's API does and fails on command,
//! exactly as scripts/provider.mjs does for the browser tests.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use candlelight::router::{Head, Piece};
use serde_json::{json, Value};

/// What a provider does with the next request, as scripts/provider.mjs names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answers as usual: a place in a queue of faults.
    Fine,
    /// 401: the key is refused.
    Unauthorized,
    /// 402: DeepSeek's Insufficient Balance.
    NoBalance,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// 503 "Server busy, please try again later."
    Busy,
    /// 400: the request is wrong.
    BadRequest,
    /// 200 and a whole answer that never ends: 64 KiB pieces of an unclosed JSON string.
    Flood,
    /// 400 from a proxy that echoes the `Authorization` header in its message.
    EchoKey,
    /// Never answers.
    Hang,
    /// Streams this many words, then falls silent.
    Stall(usize),
    /// Streams this many words, then the connection drops.
    Cut(usize),
    /// Streams this many words, then half a JSON chunk, then ends.
    Malformed(usize),
    /// Streams this many words, then an error event.
    ErrorEvent(usize),
    /// Streams the whole answer but ends without `[DONE]`.
    NoDone,
}

/// A request a provider saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub body: Value,
    pub auth: Option<String>,
    pub fault: Option<Fault>,
    pub at: f64,
}

/// An OpenAI-compatible provider answering with the words `w0 w1 …`.
pub struct Provider {
    pub name: String,
    pub base_url: String,
    keys: Option<Vec<String>>,
    words: usize,
    faults: RefCell<VecDeque<Fault>>,
    pub log: RefCell<Vec<Seen>>,
    /// Requests cancelled by the router.
    pub cancelled: Rc<Cell<usize>>,
}

impl Provider {
    pub fn new(name: &str, keys: &[&str]) -> Rc<Provider> {
        Rc::new(Provider {
            name: name.into(),
            base_url: format!("https://{name}.example/v1"),
            keys: (!keys.is_empty()).then(|| keys.iter().map(|k| k.to_string()).collect()),
            words: 8,
            faults: RefCell::new(VecDeque::new()),
            log: RefCell::new(Vec::new()),
            cancelled: Rc::new(Cell::new(0)),
        })
    }

    /// Queues faults: each request takes the next one.
    pub fn faults(&self, faults: &[Fault]) {
        self.faults.borrow_mut().extend(faults.iter().copied());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.borrow().clone()
    }

    fn chunk(&self, id: &str, delta: Value, finish: Value) -> Value {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1700000000, "model": format!("{}-model", self.name),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
    }

    /// The reply to `body` sent with `auth`, as pieces with the time each one takes.
    pub fn answer(&self, body: &Value, auth: Option<&str>, now: f64) -> Scripted {
        let refused = self
            .keys
            .as_ref()
            .is_some_and(|k| !auth.is_some_and(|a| k.iter().any(|x| x == a)));
        let fault = match refused {
            true => None,
            false => self.faults.borrow_mut().pop_front(),
        };
        self.log.borrow_mut().push(Seen {
            body: body.clone(),
            auth: auth.map(str::to_string),
            fault,
            at: now,
        });
        let json_reply = |status: u16, body: Value, retry_after: Option<&str>| Scripted {
            head: Some(Head {
                status,
                retry_after: retry_after.map(str::to_string),
                event_stream: false,
            }),
            pieces: VecDeque::from([
                (0.0, Piece::Bytes(body.to_string().into_bytes())),
                (0.0, Piece::End),
            ]),
            cancelled: self.cancelled.clone(),
        };
        if refused || fault == Some(Fault::Unauthorized) {
            return json_reply(
                401,
                json!({"error": {"message": "Authentication Fails (no such user)", "type": "authentication_error", "code": "invalid_request_error"}}),
                None,
            );
        }
        match fault {
            Some(Fault::RateLimited) => {
                return json_reply(
                    429,
                    json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}),
                    Some("1"),
                )
            }
            Some(Fault::Busy) => {
                return json_reply(
                    503,
                    json!({"error": {"message": "Server busy, please try again later.", "type": "server_error"}}),
                    None,
                )
            }
            Some(Fault::NoBalance) => {
                return json_reply(
                    402,
                    json!({"error": {"message": "Insufficient Balance", "type": "unknown_error"}}),
                    None,
                )
            }
            Some(Fault::Flood) => {
                let mut pieces = VecDeque::from([(0.0, Piece::Bytes(b"{\"id\": \"".to_vec()))]);
                let piece = vec![b'x'; 64 << 10];
                for _ in 0..(20 << 20) / piece.len() {
                    pieces.push_back((1.0, Piece::Bytes(piece.clone())));
                }
                pieces.push_back((0.0, Piece::End));
                return Scripted {
                    head: Some(Head {
                        status: 200,
                        retry_after: None,
                        event_stream: false,
                    }),
                    pieces,
                    cancelled: self.cancelled.clone(),
                };
            }
            Some(Fault::EchoKey) => {
                let message = format!(
                    "Bad request with Authorization Bearer {}",
                    auth.unwrap_or_default()
                );
                return json_reply(
                    400,
                    json!({"error": {"message": message, "type": "invalid_request_error", "param": "messages"}}),
                    None,
                );
            }
            Some(Fault::BadRequest) => {
                return json_reply(
                    400,
                    json!({"error": {"message": "messages must not be empty", "type": "invalid_request_error", "param": "messages"}}),
                    None,
                )
            }
            Some(Fault::Hang) => {
                return Scripted {
                    head: None,
                    pieces: VecDeque::new(),
                    cancelled: self.cancelled.clone(),
                }
            }
            _ => {}
        }
        let last = body["messages"].as_array().and_then(|m| m.last());
        // Offered tools and not answering a tool's result: a call, as OpenAI makes one.
        let offers = body["tools"].as_array().is_some_and(|t| !t.is_empty())
            && body["tool_choice"] != "none";
        if offers && last.is_some_and(|m| m["role"] != "tool") {
            return self.tool_call(body);
        }
        // The answer: words continuing any assistant prefix the request carries.
        let prefix = match last {
            Some(m) if m["role"] == "assistant" && m["prefix"] == true => {
                m["content"].as_str().unwrap_or("")
            }
            _ => "",
        };
        let start = prefix.split(' ').filter(|w| !w.is_empty()).count();
        let budget = body["max_tokens"]
            .as_u64()
            .map_or(self.words, |n| n as usize)
            .min(self.words.saturating_sub(start));
        let pieces: Vec<String> = (start..start + budget).map(|i| format!("w{i} ")).collect();
        let usage = json!({"prompt_tokens": 10, "completion_tokens": pieces.len(), "total_tokens": 10 + pieces.len(), "prompt_cache_hit_tokens": 0});
        let id = format!("{}-{}", self.name, self.log.borrow().len());
        if body["stream"] != true {
            let whole = json!({"id": id, "object": "chat.completion", "created": 1700000000, "model": format!("{}-model", self.name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat()}, "finish_reason": "stop"}], "usage": usage});
            return json_reply(200, whole, None);
        }
        let sse = |v: &Value| Piece::Bytes(format!("data: {v}\n\n").into_bytes());
        let mut out = VecDeque::new();
        out.push_back((
            0.0,
            sse(&self.chunk(
                &id,
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )),
        ));
        for (i, word) in pieces.iter().enumerate() {
            match fault {
                Some(Fault::Stall(at)) if at == i => {
                    out.push_back((f64::INFINITY, Piece::End));
                    return self.stream(out);
                }
                Some(Fault::Cut(at)) if at == i => {
                    out.push_back((0.0, Piece::Cut));
                    return self.stream(out);
                }
                Some(Fault::Malformed(at)) if at == i => {
                    out.push_back((
                        0.0,
                        Piece::Bytes(
                            b"data: {\"choices\": [{\"delta\": {\"content\": \"w\n\n".to_vec(),
                        ),
                    ));
                    out.push_back((0.0, Piece::End));
                    return self.stream(out);
                }
                Some(Fault::ErrorEvent(at)) if at == i => {
                    out.push_back((0.0, sse(&json!({"error": {"message": "Server busy, please try again later.", "type": "server_error"}}))));
                    out.push_back((0.0, Piece::End));
                    return self.stream(out);
                }
                _ => {}
            }
            out.push_back((
                5.0,
                sse(&self.chunk(&id, json!({"content": word}), Value::Null)),
            ));
        }
        out.push_back((0.0, sse(&self.chunk(&id, json!({}), json!("stop")))));
        if body["stream_options"]["include_usage"] == true {
            let mut last = self.chunk(&id, json!({}), Value::Null);
            last["choices"] = json!([]);
            last["usage"] = usage;
            out.push_back((0.0, sse(&last)));
        }
        if fault != Some(Fault::NoDone) {
            out.push_back((0.0, Piece::Bytes(b"data: [DONE]\n\n".to_vec())));
        }
        out.push_back((0.0, Piece::End));
        self.stream(out)
    }

    /// A call to the named function (or the first), its arguments naming this provider; streamed
    /// as OpenAI streams calls: id, type and name first, then the arguments in pieces.
    fn tool_call(&self, body: &Value) -> Scripted {
        let id = format!("{}-{}", self.name, self.log.borrow().len());
        let name = body["tool_choice"]["function"]["name"]
            .as_str()
            .or_else(|| body["tools"][0]["function"]["name"].as_str())
            .unwrap_or("f")
            .to_string();
        let call_id = format!("call_{}_{}", self.name, self.log.borrow().len());
        let arguments = json!({"from": self.name}).to_string();
        let finish = json!("tool_calls");
        if body["stream"] != true {
            let whole = json!({"id": id, "object": "chat.completion", "created": 1700000000,
                "model": format!("{}-model", self.name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
                    "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
            return Scripted {
                head: Some(Head {
                    status: 200,
                    retry_after: None,
                    event_stream: false,
                }),
                pieces: VecDeque::from([
                    (0.0, Piece::Bytes(whole.to_string().into_bytes())),
                    (0.0, Piece::End),
                ]),
                cancelled: self.cancelled.clone(),
            };
        }
        let sse = |v: &Value| Piece::Bytes(format!("data: {v}\n\n").into_bytes());
        let (a, b) = arguments.split_at(arguments.len() / 2);
        let deltas = [
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id,
                "type": "function", "function": {"name": name, "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
        ];
        let mut out: VecDeque<(f64, Piece)> = deltas
            .iter()
            .map(|d| (5.0, sse(&self.chunk(&id, d.clone(), Value::Null))))
            .collect();
        out.push_back((0.0, sse(&self.chunk(&id, json!({}), finish))));
        out.push_back((0.0, Piece::Bytes(b"data: [DONE]\n\n".to_vec())));
        out.push_back((0.0, Piece::End));
        self.stream(out)
    }

    fn stream(&self, pieces: VecDeque<(f64, Piece)>) -> Scripted {
        Scripted {
            head: Some(Head {
                status: 200,
                retry_after: None,
                event_stream: true,
            }),
            pieces,
            cancelled: self.cancelled.clone(),
        }
    }
}

/// A reply as a script: pieces with the time each takes (infinite: silence).
pub struct Scripted {
    pub head: Option<Head>,
    pub pieces: VecDeque<(f64, Piece)>,
    pub cancelled: Rc<Cell<usize>>,
}
