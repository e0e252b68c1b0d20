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
}

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
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| ChatError::BadTemplate(e.to_string()))?;
        let tools = tools.map(|t| minijinja::Value::from(minijinja::value::Serde(t)));
        tmpl.render(minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| ChatError::Render(e.to_string()))
    }
}
