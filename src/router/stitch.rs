//! One stream for the client across routes: when a stream breaks after some tokens and the next
//! route continues it (see [`super::continuation`]), its chunks are rewritten to the first
//! stream's id, creation time and model, its opening role chunk is dropped, and its usage counts
//! the tokens sent before the break. Tool calls are gathered too (for the kept answer), but a
//! stream that broke inside its calls cannot be continued as text.

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct Stitch {
    /// id, created, model of the first chunk the client saw.
    head: Option<(Value, Value, Value)>,
    role_sent: bool,
    content: String,
    reasoning: String,
    /// Calls so far, `{"id", "type", "function": {"name", "arguments"}}` by index.
    tool_calls: Vec<Value>,
    /// Chunks that carried text, this route and before: the token count a stream without usage
    /// implies (one token a chunk, as servers stream).
    chunks_with_text: u64,
    before_break: u64,
    finish_reason: Option<Value>,
    usage: Option<Value>,
}

impl Stitch {
    /// The chunk the client gets for `chunk` from the current route, or None to drop it.
    pub fn pass(&mut self, mut chunk: Value) -> Option<Value> {
        match &self.head {
            None => {
                self.head = Some((
                    chunk["id"].clone(),
                    chunk["created"].clone(),
                    chunk["model"].clone(),
                ))
            }
            Some((id, created, model)) => {
                chunk["id"] = id.clone();
                chunk["created"] = created.clone();
                chunk["model"] = model.clone();
            }
        }
        let no_usage = chunk.get("usage").is_none_or(Value::is_null);
        if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
            for c in choices.iter_mut() {
                let delta = &mut c["delta"];
                if delta.get("role").is_some() {
                    if self.role_sent {
                        delta.as_object_mut().map(|d| d.remove("role"));
                    }
                    self.role_sent = true;
                }
                let text = |k: &str| {
                    delta
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let (content, reasoning) = (text("content"), text("reasoning_content"));
                let calls = delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !content.is_empty() || !reasoning.is_empty() || !calls.is_empty() {
                    self.chunks_with_text += 1;
                }
                self.content.push_str(&content);
                self.reasoning.push_str(&reasoning);
                for call in calls {
                    self.gather(&call);
                }
                if !c["finish_reason"].is_null() {
                    self.finish_reason = Some(c["finish_reason"].clone());
                }
            }
            // A continuation's opening chunk carries nothing new once its role is dropped.
            let blank = |c: &Value| {
                c["finish_reason"].is_null()
                    && c["delta"]
                        .as_object()
                        .is_none_or(|d| d.values().all(|v| v.is_null() || v == ""))
            };
            if self.before_break > 0 && !choices.is_empty() && choices.iter().all(blank) && no_usage
            {
                return None;
            }
        }
        if let Some(usage) = chunk.get_mut("usage").filter(|u| u.is_object()) {
            let add = |u: &mut Value, k: &str, n: u64| {
                if let Some(v) = u.get(k).and_then(Value::as_u64) {
                    u[k] = (v + n).into();
                }
            };
            add(usage, "completion_tokens", self.before_break);
            add(usage, "total_tokens", self.before_break);
            self.usage = Some(usage.clone());
        }
        Some(chunk)
    }

    /// One streamed piece of a call, added to the calls so far.
    fn gather(&mut self, piece: &Value) {
        let Some(index) = piece["index"].as_u64().map(|i| i as usize) else {
            return;
        };
        if index > self.tool_calls.len() || index > 127 {
            return;
        }
        if index == self.tool_calls.len() {
            self.tool_calls
                .push(json!({"id": piece["id"], "type": "function",
                "function": {"name": piece["function"]["name"], "arguments": ""}}));
        }
        let call = &mut self.tool_calls[index];
        if let Some(args) = piece["function"]["arguments"].as_str() {
            let so_far = call["function"]["arguments"]
                .as_str()
                .unwrap_or("")
                .to_string();
            call["function"]["arguments"] = (so_far + args).into();
        }
    }

    /// Whether a break can be continued on another route: not once calls began (a
    /// continuation carries text only).
    pub fn resumable(&self) -> bool {
        self.tool_calls.is_empty()
    }

    /// The route broke: what came so far, for [`super::continuation`], and the tokens it took.
    pub fn broken(&mut self) -> (String, u64) {
        self.before_break = self.chunks_with_text;
        (self.content.clone(), self.chunks_with_text)
    }

    /// The whole answer the client got, as one `chat.completion`; None until a finish reason
    /// came.
    pub fn completion(&self) -> Option<Value> {
        let finish_reason = self.finish_reason.clone()?;
        let (id, created, model) = self.head.clone()?;
        let mut message = json!({"role": "assistant", "content": self.content});
        if !self.reasoning.is_empty() {
            message["reasoning_content"] = self.reasoning.clone().into();
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self.tool_calls.clone().into();
            if self.content.is_empty() {
                message["content"] = Value::Null;
            }
        }
        let mut out = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        });
        if let Some(usage) = &self.usage {
            out["usage"] = usage.clone();
        }
        Some(out)
    }

    /// The answer's text so far (content, then reasoning).
    pub fn text(&self) -> (&str, &str) {
        (&self.content, &self.reasoning)
    }
}
