//! Tool calls in a model's own syntax: the grammar that makes a call parse, and the parser that
//! turns the streamed text into OpenAI's `tool_calls` (name first, then the arguments in pieces).
//! Hermes' `<tool_call>{"name": …, "arguments": …}</tool_call>` is what Qwen2.5, Qwen3, Hermes
//! and SmolLM3 templates ask for.

use serde_json::Value;

use super::{prepare_schema, OutputRule, StructuredError};

const OPEN: &str = "<tool_call>";
/// What switches a waiting call grammar on: the tag's stem. Small models write variants
/// (`<tool_response>`, `<tools>`) when they mean to call; llama.cpp accepts such variants too.
/// The grammar then finishes the tag as `<tool_call>`.
const STEM: &str = "<tool_";
const CLOSE: &str = "</tool_call>";
const NAME: &str = "{\"name\": \"";
const ARGUMENTS: &str = "\", \"arguments\": ";

/// A chat template's way of writing a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSyntax {
    /// `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>`
    Hermes,
}

/// A function the model may call: its name, the JSON schema of its arguments, and whether the
/// schema is enforced strictly (unknown keywords refused) or leniently.
#[derive(Debug, Clone)]
pub struct Function<'a> {
    pub name: &'a str,
    pub parameters: Option<&'a Value>,
    pub strict: bool,
}

/// Which calls the answer must make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls<'a> {
    /// Text or calls, as the model decides: the grammar waits for the model's opening tag.
    Auto,
    /// At least one call, to any of the functions.
    Required,
    /// A call to this function.
    Named(&'a str),
}

impl ToolSyntax {
    /// The syntax a template writes calls in, when it takes `tools` at all.
    pub fn of_template(source: &str, takes_tools: bool) -> Option<Self> {
        (takes_tools && source.contains(OPEN)).then_some(ToolSyntax::Hermes)
    }

    /// The rule that makes the answer's calls parse: `parallel` allows more than one.
    pub fn rule(
        self,
        functions: &[Function],
        calls: Calls,
        parallel: bool,
    ) -> Result<OutputRule, StructuredError> {
        let mut grammar = String::new();
        let mut alternatives = Vec::new();
        for (i, f) in functions.iter().enumerate() {
            if let Calls::Named(name) = calls {
                if f.name != name {
                    continue;
                }
            }
            let any = serde_json::json!({"type": "object"});
            let schema = prepare_schema(f.parameters.unwrap_or(&any), f.strict)?;
            let head = format!("\n{NAME}{}{ARGUMENTS}", f.name);
            grammar.push_str(&format!(
                "call_{i}: {} args_{i} {}\nargs_{i}: %json {schema}\n",
                literal(&head),
                literal(&format!("}}\n{CLOSE}"))
            ));
            alternatives.push(format!("call_{i}"));
        }
        if alternatives.is_empty() {
            return Err(StructuredError::BadSchema("no function to call".into()));
        }
        let next = format!("{} call", literal(&format!("\n{OPEN}")));
        let more = if parallel && !matches!(calls, Calls::Named(_)) {
            format!("({next})*")
        } else {
            String::new()
        };
        let (start, trigger) = match calls {
            Calls::Auto => (
                format!("start: {} call {more}\n", literal(&OPEN[STEM.len()..])),
                Some(STEM.to_string()),
            ),
            _ => (format!("start: {} call {more}\n", literal(OPEN)), None),
        };
        Ok(OutputRule {
            grammar: format!("{start}call: {}\n{grammar}", alternatives.join(" | ")),
            trigger,
        })
    }
}

/// A Lark string literal.
fn literal(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// What a piece of output turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallPiece {
    Content(String),
    /// A call begins: its index among the answer's calls and the function's name.
    Call {
        index: usize,
        name: String,
    },
    /// More of a call's arguments (JSON text).
    Arguments {
        index: usize,
        text: String,
    },
}

enum Mode {
    Text,
    /// Between calls: blank lines are dropped.
    Between,
    /// Inside a call; `sent` bytes of its arguments went out, once the name is known.
    Call {
        named: bool,
        sent: usize,
    },
}

/// Splits streamed answer text into content and calls.
pub struct ToolCallParser {
    mode: Mode,
    held: String,
    calls: usize,
}

impl Default for ToolCallParser {
    fn default() -> Self {
        Self {
            mode: Mode::Text,
            held: String::new(),
            calls: 0,
        }
    }
}

impl ToolCallParser {
    /// How many calls began.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, text: &str) -> Vec<ToolCallPiece> {
        self.held.push_str(text);
        let mut out = Vec::new();
        self.advance(&mut out, false);
        out
    }

    /// The end of the answer: whatever was held back goes out.
    pub fn finish(&mut self) -> Vec<ToolCallPiece> {
        let mut out = Vec::new();
        self.advance(&mut out, true);
        out
    }

    fn advance(&mut self, out: &mut Vec<ToolCallPiece>, end: bool) {
        loop {
            match self.mode {
                Mode::Text | Mode::Between => {
                    if let Some(at) = self.held.find(OPEN) {
                        self.content(out, at);
                        self.held.drain(..OPEN.len());
                        self.mode = Mode::Call {
                            named: false,
                            sent: 0,
                        };
                        continue;
                    }
                    let keep = if end {
                        0
                    } else {
                        crate::chat::partial_suffix(&self.held, OPEN)
                    };
                    self.content(out, self.held.len() - keep);
                    return;
                }
                Mode::Call { named: false, .. } => {
                    let head = self.held.trim_start();
                    let skipped = self.held.len() - head.len();
                    let name_end = head
                        .strip_prefix(NAME)
                        .and_then(|rest| rest.find(ARGUMENTS).map(|i| (i, rest)));
                    match name_end {
                        Some((i, rest)) => {
                            let name = rest[..i].to_string();
                            out.push(ToolCallPiece::Call {
                                index: self.calls,
                                name,
                            });
                            self.calls += 1;
                            self.held
                                .drain(..skipped + NAME.len() + i + ARGUMENTS.len());
                            self.mode = Mode::Call {
                                named: true,
                                sent: 0,
                            };
                        }
                        // Not a call after all (an unconstrained model): it was text.
                        None if end || !could_start(head) => {
                            out.push(ToolCallPiece::Content(OPEN.into()));
                            self.mode = Mode::Text;
                        }
                        None => return,
                    }
                }
                Mode::Call { named: true, sent } => {
                    let index = self.calls - 1;
                    let close = self.held.find(CLOSE);
                    let upto = match close {
                        Some(at) => at,
                        None if end => self.held.len(),
                        None => self.held.len() - crate::chat::partial_suffix(&self.held, CLOSE),
                    };
                    // The call's own closing brace follows the arguments.
                    let body = self.held[..upto].trim_end();
                    let safe = if close.is_some() || !end {
                        body.strip_suffix('}').unwrap_or(body).len()
                    } else {
                        body.len()
                    };
                    if safe > sent {
                        out.push(ToolCallPiece::Arguments {
                            index,
                            text: self.held[sent..safe].to_string(),
                        });
                    }
                    let sent = sent.max(safe);
                    match close {
                        Some(at) => {
                            self.held.drain(..at + CLOSE.len());
                            self.mode = Mode::Between;
                        }
                        None => {
                            self.mode = Mode::Call { named: true, sent };
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Sends the first `upto` held bytes as content (blank lines between calls are dropped).
    fn content(&mut self, out: &mut Vec<ToolCallPiece>, upto: usize) {
        let text: String = self.held.drain(..upto).collect();
        if matches!(self.mode, Mode::Between) {
            if text.trim().is_empty() {
                return;
            }
            self.mode = Mode::Text;
        }
        if !text.is_empty() {
            out.push(ToolCallPiece::Content(text));
        }
    }
}

/// Whether `head` may still grow into a call's opening `{"name": "…", "arguments": `.
fn could_start(head: &str) -> bool {
    match head.strip_prefix(NAME) {
        Some(rest) => rest.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '"' | ',' | ' ' | ':' | 'a'..='z')
        }),
        None => NAME.starts_with(head),
    }
}
