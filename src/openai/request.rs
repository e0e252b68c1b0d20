//! Checking a chat-completions request and turning it into what the model runs: the prompt
//! (with the tools the template describes), the sampling settings, and the rule the output must
//! follow (a JSON schema, JSON mode, or the model's tool-call syntax). Everything a request can
//! get wrong is refused here, naming the field, before a token is generated.

use serde_json::Value;

use super::wire::*;
use super::RequestError;
use crate::chat::{ChatTemplate, Message};
use crate::engine::{GenerateRequest, SamplingParams};
use crate::structured::{Calls, Function, OutputRule, ToolSyntax};
use crate::tokenizer::Tokenizer;

/// At most this many stop strings, like the hosted APIs.
const MAX_STOPS: usize = 16;
/// At most this many tools, as OpenAI allows.
const MAX_TOOLS: usize = 128;

/// A request ready to run.
pub struct Prepared {
    pub generate: GenerateRequest,
    /// The prompt leaves the model inside `<think>`.
    pub in_think: bool,
    /// What the output must follow, if anything, and the request field that asked for it.
    pub rule: Option<(OutputRule, &'static str)>,
    /// The syntax of the calls the answer may make, when it may make any.
    pub tools: Option<ToolSyntax>,
}

fn bad(param: &'static str, reason: impl Into<String>) -> RequestError {
    RequestError::BadParam {
        param,
        reason: reason.into(),
    }
}

fn unsupported(param: &'static str, reason: impl Into<String>) -> RequestError {
    RequestError::Unsupported {
        param,
        reason: reason.into(),
    }
}

/// Checks `req` and renders its prompt with `template` and `tokenizer`.
pub fn prepare(
    req: &ChatCompletionRequest,
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
) -> Result<Prepared, RequestError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(unsupported(
            "n",
            "the local model gives one choice per request",
        ));
    }
    if req.messages.is_empty() {
        return Err(RequestError::NoMessages);
    }
    let offered = tool_offer(req, template)?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (index, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system",
            r @ ("system" | "user" | "assistant" | "tool") => r,
            other => {
                return Err(RequestError::BadRole {
                    index,
                    role: other.into(),
                })
            }
        };
        let mut message = Message::new(role, &m.content.text()?);
        message.tool_call_id = m.tool_call_id.clone();
        if let Some(calls) = &m.tool_calls {
            message.tool_calls = Some(calls_for_template(calls));
        }
        messages.push(message);
    }
    let sampling = sampling(req)?;
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(0) => return Err(bad("max_tokens", "must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let stop: Vec<String> = req.stop.clone().map(Stop::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOPS {
        return Err(bad("stop", "holds more than 16 strings"));
    }
    let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();

    // A last assistant message marked `prefix` is the start of the answer: the prompt ends
    // with its text, and generation continues it (how the router resumes a broken stream).
    let prefix = match req.messages.last() {
        Some(m) if m.role == "assistant" && m.prefix == Some(true) => {
            messages.pop();
            m.content.text()?
        }
        _ => String::new(),
    };
    let tools_json = offered
        .as_ref()
        .map(|_| serde_json::to_value(&req.tools).unwrap_or(Value::Null));
    let mut text = template
        .render_with_tools(&messages, tools_json.as_ref(), true)
        .map_err(|e| match e.is_limit() {
            true => RequestError::ModelLimit(e.to_string()),
            false => bad("messages", e.to_string()),
        })?;
    text.push_str(&prefix);
    let in_think = text.trim_end().ends_with("<think>");
    let rule = match &offered {
        Some((syntax, calls)) => Some((tool_rule(req, *syntax, *calls)?, "tools")),
        None => format_rule(req, in_think)?.map(|r| (r, "response_format")),
    };
    let bos_in_text = tokenizer
        .bos()
        .and_then(|b| tokenizer.id_to_token(b))
        .is_some_and(|b| text.starts_with(&b));
    let prompt = tokenizer
        .encode(&text, !bos_in_text)
        .map_err(|e| bad("messages", e.to_string()))?;
    Ok(Prepared {
        generate: GenerateRequest {
            prompt,
            max_tokens,
            sampling,
            stop,
            stop_tokens: Vec::new(),
        },
        in_think,
        rule,
        tools: offered.map(|(syntax, _)| syntax),
    })
}

fn sampling(req: &ChatCompletionRequest) -> Result<SamplingParams, RequestError> {
    let in_range =
        |v: Option<f32>, lo: f32, hi: f32| v.is_none_or(|v| v.is_finite() && v >= lo && v <= hi);
    if !in_range(req.temperature, 0.0, 2.0) {
        return Err(bad("temperature", "must be between 0 and 2"));
    }
    if !req.top_p.is_none_or(|p| p > 0.0 && p <= 1.0) {
        return Err(bad("top_p", "must be greater than 0 and at most 1"));
    }
    if !in_range(req.frequency_penalty, -2.0, 2.0) {
        return Err(bad("frequency_penalty", "must be between -2 and 2"));
    }
    if !in_range(req.presence_penalty, -2.0, 2.0) {
        return Err(bad("presence_penalty", "must be between -2 and 2"));
    }
    if !in_range(req.min_p, 0.0, 1.0) {
        return Err(bad("min_p", "must be between 0 and 1"));
    }
    if !in_range(req.repetition_penalty, 0.0, 10.0) || req.repetition_penalty == Some(0.0) {
        return Err(bad(
            "repetition_penalty",
            "must be greater than 0 and at most 10",
        ));
    }
    let defaults = SamplingParams::default();
    Ok(SamplingParams {
        temperature: req.temperature.unwrap_or(1.0),
        top_p: req.top_p.unwrap_or(1.0),
        top_k: req.top_k.map_or(defaults.top_k, |k| k as usize),
        min_p: req.min_p.unwrap_or(defaults.min_p),
        repetition_penalty: req.repetition_penalty.unwrap_or(1.0),
        frequency_penalty: req.frequency_penalty.unwrap_or(0.0),
        presence_penalty: req.presence_penalty.unwrap_or(0.0),
        seed: req.seed.unwrap_or_else(fresh_seed),
        ..defaults
    })
}

/// Which calls the answer may make, in which syntax; None when the request offers no tools or
/// forbids calling them (`tool_choice: "none"`: the model is not told of them either).
fn tool_offer<'a>(
    req: &'a ChatCompletionRequest,
    template: &ChatTemplate,
) -> Result<Option<(ToolSyntax, Calls<'a>)>, RequestError> {
    let tools = req.tools.as_deref().unwrap_or_default();
    let calls = match &req.tool_choice {
        None => Calls::Auto,
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "none" => return Ok(None),
            "auto" => Calls::Auto,
            "required" => Calls::Required,
            other => {
                return Err(bad(
                    "tool_choice",
                    format!("{other:?} is not none, auto, required or a function"),
                ))
            }
        },
        Some(ToolChoice::Function { kind, function }) => {
            if kind != "function" {
                return Err(bad("tool_choice", "type must be \"function\""));
            }
            if !tools.iter().any(|t| t.function.name == function.name) {
                return Err(bad(
                    "tool_choice",
                    format!("names {:?}, which is not among the tools", function.name),
                ));
            }
            Calls::Named(&function.name)
        }
    };
    if tools.is_empty() {
        return match req.tool_choice {
            None => Ok(None),
            Some(_) => Err(bad("tool_choice", "is only allowed when tools are given")),
        };
    }
    if tools.len() > MAX_TOOLS {
        return Err(bad("tools", "holds more than 128 functions"));
    }
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(bad(
                "tools",
                format!("tool {i} has type {:?}, not \"function\"", t.kind),
            ));
        }
        let name = &t.function.name;
        let well_named = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !well_named {
            return Err(bad(
                "tools",
                format!("function name {name:?} must be 1 to 64 letters, digits, _ or -"),
            ));
        }
        if tools[..i].iter().any(|o| o.function.name == *name) {
            return Err(bad("tools", format!("function {name:?} is defined twice")));
        }
        if t.function
            .parameters
            .as_ref()
            .is_some_and(|p| !p.is_object())
        {
            return Err(bad(
                "tools",
                format!("the parameters of {name:?} must be a JSON schema object"),
            ));
        }
    }
    if req
        .response_format
        .as_ref()
        .is_some_and(|f| f.kind != "text")
    {
        return Err(unsupported(
            "response_format",
            "a JSON format together with tools is not supported by the local model",
        ));
    }
    match ToolSyntax::of_template(template.source(), template.takes_tools()) {
        Some(syntax) => Ok(Some((syntax, calls))),
        None => Err(unsupported(
            "tools",
            "the local model's chat template has no tool calling",
        )),
    }
}

fn tool_rule(
    req: &ChatCompletionRequest,
    syntax: ToolSyntax,
    calls: Calls,
) -> Result<OutputRule, RequestError> {
    let functions: Vec<Function> = req
        .tools
        .iter()
        .flatten()
        .map(|t| Function {
            name: &t.function.name,
            parameters: t.function.parameters.as_ref(),
            strict: t.function.strict == Some(true),
        })
        .collect();
    syntax
        .rule(&functions, calls, req.parallel_tool_calls != Some(false))
        .map_err(|e| bad("tools", e.to_string()))
}

fn format_rule(
    req: &ChatCompletionRequest,
    in_think: bool,
) -> Result<Option<OutputRule>, RequestError> {
    let Some(format) = &req.response_format else {
        return Ok(None);
    };
    let rule = match format.kind.as_str() {
        "text" => return Ok(None),
        "json_object" => OutputRule::json(None, true, in_think),
        "json_schema" => {
            let Some(spec) = &format.json_schema else {
                return Err(bad("response_format", "json_schema is missing"));
            };
            OutputRule::json(spec.schema.as_ref(), spec.strict == Some(true), in_think)
        }
        other => {
            return Err(bad(
                "response_format",
                format!("type {other:?} is not text, json_object or json_schema"),
            ))
        }
    };
    rule.map(Some)
        .map_err(|e| bad("response_format", e.to_string()))
}

/// OpenAI sends a call's arguments as JSON text; templates write them with `tojson`, so they get
/// the object (text that is not JSON stays text).
fn calls_for_template(calls: &[ToolCall]) -> Value {
    let calls = calls
        .iter()
        .map(|c| {
            let arguments = serde_json::from_str::<Value>(&c.function.arguments)
                .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
            serde_json::json!({
                "id": c.id,
                "type": c.kind,
                "function": {"name": c.function.name, "arguments": arguments},
            })
        })
        .collect();
    Value::Array(calls)
}

/// A seed for requests that give none, so unseeded answers differ.
fn fresh_seed() -> u64 {
    let now = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15
}
