//! Chat prompts: the model file's own Jinja chat template rendered with minijinja (with the
//! Python string methods Hugging Face templates call), ChatML when the file has none, and the
//! split of R1-style `<think>…</think>` output into reasoning and answer.

mod think;

pub(crate) use think::partial_suffix;
pub use think::{Split, ThinkSplitter};

use serde::{Deserialize, Serialize};

use crate::gguf::GgufFile;

/// Failures rendering a chat prompt.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not parse: {0}")]
    BadTemplate(String),
    #[error("chat template failed: {0}")]
    Render(String),
    /// The template passed one of the limits a hostile model file meets: the model is at fault,
    /// not the request.
    #[error("chat template {0}")]
    Limit(String),
}

impl ChatError {
    /// Whether the model file's template, not the request, is at fault.
    pub fn is_limit(&self) -> bool {
        matches!(self, ChatError::Limit(_))
    }
}

/// Largest template source taken. Real templates are 1–20 KB; the cap keeps a hostile file's
/// template from costing a parse of megabytes.
pub const MAX_TEMPLATE_BYTES: usize = 256 << 10;

/// Work a render may do before it is stopped, on top of what its input pays for (minijinja
/// fuel: one an instruction, one per 64 bytes made, checked before a sized allocation). That
/// is 500 000 instructions or 32 MiB of text made: a long conversation with Qwen2.5's tool
/// block renders well inside it; nested `range(100000)` loops or a string doubled in a loop
/// run out within milliseconds instead of hanging or allocating gigabytes.
const BASE_FUEL: u64 = 500_000;

/// Rendered prompts longer than this (plus twice the request's text) are refused: a prompt must
/// fit a context window, which holds well under 4 MiB of text.
const BASE_OUTPUT_BYTES: usize = 4 << 20;

/// One chat message, as in the OpenAI API, as templates read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// An assistant turn's calls, `[{"id", "type", "function": {"name", "arguments"}}]`, the
    /// arguments as an object (templates write them with `tojson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A tool message's call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// ChatML, what Qwen uses and what we fall back on.
pub const CHATML: &str = "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}";

/// A compiled chat template and the special-token texts it may reference.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
    source: String,
    takes_tools: bool,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(ChatError::Limit(format!(
                "is {} bytes; at most {MAX_TEMPLATE_BYTES} are taken",
                source.len()
            )));
        }
        let mut env = minijinja::Environment::new();
        // Hugging Face renders with these two on; templates are written for them.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatError::BadTemplate(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_function("strftime_now", |_fmt: String| -> String {
            // Templates use it for "today" in system prompts; a fixed date keeps prompts cacheable.
            "26 Jul 2024".to_string()
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| ChatError::BadTemplate(e.to_string()))?;
        let takes_tools = env
            .get_template("chat")
            .map_err(|e| ChatError::BadTemplate(e.to_string()))?
            .undeclared_variables(false)
            .contains("tools");
        Ok(Self {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            source: source.into(),
            takes_tools,
        })
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template reads a `tools` list (the model was trained to call functions).
    pub fn takes_tools(&self) -> bool {
        self.takes_tools
    }

    /// The template stored in the file (`tokenizer.chat_template`), or ChatML.
    pub fn from_gguf(
        file: &GgufFile,
        tokenizer: &crate::tokenizer::Tokenizer,
    ) -> Result<Self, ChatError> {
        let source = file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .unwrap_or(CHATML);
        Self::for_tokenizer(source, tokenizer)
    }

    /// `source` with `tokenizer`'s BOS and EOS texts.
    pub fn for_tokenizer(
        source: &str,
        tokenizer: &crate::tokenizer::Tokenizer,
    ) -> Result<Self, ChatError> {
        let text = |id: Option<u32>| {
            id.and_then(|i| tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        Self::new(source, &text(tokenizer.bos()), &text(tokenizer.eos()))
    }

    /// The prompt for `messages`; `add_generation_prompt` opens the assistant's turn.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// The prompt for `messages` offering `tools` (OpenAI's list of function definitions),
    /// which the template describes to the model in its own words.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let input = input_bytes(messages, tools);
        let mut env = self.env.clone();
        env.set_fuel(Some(BASE_FUEL + input as u64 / 4));
        let tmpl = env
            .get_template("chat")
            .map_err(|e| ChatError::BadTemplate(e.to_string()))?;
        let tools = tools.map(|t| minijinja::Value::from(minijinja::value::Serde(t)));
        let mut out = CappedText::new(BASE_OUTPUT_BYTES + 2 * input);
        let rendered = tmpl.render_captured_to(
            minijinja::context! {
                messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
            &mut out,
        );
        match rendered {
            Ok(_) => String::from_utf8(out.text).map_err(|e| ChatError::Render(e.to_string())),
            Err(_) if out.overflowed => Err(ChatError::Limit(format!(
                "wrote more than {} bytes of prompt",
                out.cap
            ))),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(ChatError::Limit(
                "ran out of fuel (it loops or builds text without bound)".into(),
            )),
            Err(e) => Err(ChatError::Render(e.to_string())),
        }
    }
}

/// Bytes of text a request hands the template: what fuel and the output cap grow with.
fn input_bytes(messages: &[Message], tools: Option<&serde_json::Value>) -> usize {
    let text: usize = messages
        .iter()
        .map(|m| {
            m.role.len()
                + m.content.len()
                + m.tool_calls.as_ref().map_or(0, |c| c.to_string().len())
        })
        .sum();
    text + tools.map_or(0, |t| t.to_string().len())
}

/// The rendered prompt, refused past `cap` bytes while it is written rather than after.
struct CappedText {
    text: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedText {
    fn new(cap: usize) -> Self {
        Self {
            text: Vec::new(),
            cap,
            overflowed: false,
        }
    }
}

impl std::io::Write for CappedText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("prompt too long"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
