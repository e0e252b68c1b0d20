//! Structured output: JSON schemas, JSON mode and tool calls become a grammar (llguidance's),
//! and the grammar a token mask beside the forward pass, so the answer always parses. A rule may
//! wait for a trigger in the output (the model's own `<tool_call>`, or `</think>` after an R1
//! model's reasoning) before it limits anything.

mod tools;
mod vocab;

pub use tools::{Calls, Function, ToolCallParser, ToolCallPiece, ToolSyntax};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use toktrie::TokEnv;

use crate::engine::Constraint;
use crate::tokenizer::Tokenizer;

/// Why a format could not be turned into a grammar.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StructuredError {
    #[error("schema is not usable: {0}")]
    BadSchema(String),
    #[error("the vocabulary cannot carry a grammar: {0}")]
    Vocabulary(String),
}

/// How JSON is written under a schema: one line, one space after `:` and `,`. Flexible
/// whitespace would let a weak model spend its whole budget on blanks.
fn json_options(strict: bool) -> Value {
    json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
        // A lenient schema ignores keywords the compiler does not know instead of refusing.
        "lenient": !strict,
    })
}

/// `schema` with our JSON writing options, ready for llguidance.
pub fn prepare_schema(schema: &Value, strict: bool) -> Result<Value, StructuredError> {
    let mut schema = match schema {
        Value::Object(_) => schema.clone(),
        Value::Bool(true) => json!({}),
        _ => {
            return Err(StructuredError::BadSchema(
                "a JSON schema must be an object".into(),
            ))
        }
    };
    if let Some(o) = schema.as_object_mut() {
        o.insert("x-guidance".into(), json_options(strict));
    }
    Ok(schema)
}

/// The longest run of digits a number gets while anything else may follow: schemas rarely
/// bound precision, and a small model, once in a number, repeats digits until its budget is
/// gone. llama.cpp's schema grammars cap integral and fraction parts at 16 digits too.
const MAX_DIGITS: usize = 16;

/// llguidance's first line: the rest repeats the grammar.
fn first_line(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    match line.split_once(": ") {
        Some((at, rest)) if at.starts_with("at ") => rest.to_string(),
        _ => line.to_string(),
    }
}

/// A grammar and, when it waits for one, the text that switches it on. The grammar then
/// describes what follows the trigger.
#[derive(Debug, Clone)]
pub struct OutputRule {
    pub grammar: String,
    pub trigger: Option<String>,
}

impl OutputRule {
    /// JSON under `schema` (any JSON object when None); after `</think>` when the model
    /// reasons first.
    pub fn json(
        schema: Option<&Value>,
        strict: bool,
        after_think: bool,
    ) -> Result<Self, StructuredError> {
        let schema = prepare_schema(schema.unwrap_or(&json!({"type": "object"})), strict)?;
        let body = format!("%json {schema}");
        Ok(match after_think {
            false => Self {
                grammar: format!("start: {body}\n"),
                trigger: None,
            },
            true => Self {
                grammar: format!("start: SPACE {body}\nSPACE: /[ \\n]*/\n"),
                trigger: Some("</think>".into()),
            },
        })
    }
}

/// Grammars for one model's vocabulary (building the vocabulary's tables is the slow part).
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self, StructuredError> {
        let env: TokEnv = vocab::token_env(tokenizer);
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| StructuredError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// The constraint `rule` describes; a grammar that does not compile is refused here, before
    /// any token is generated.
    pub fn constraint(&self, rule: &OutputRule) -> Result<GrammarConstraint, StructuredError> {
        let grammar = TopLevelGrammar::from_lark(rule.grammar.clone());
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| StructuredError::BadSchema(first_line(e)))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(StructuredError::BadSchema(first_line(e)));
        }
        Ok(GrammarConstraint {
            matcher,
            env: self.factory.tok_env().clone(),
            waiting: rule.trigger.clone().map(|t| (t, Vec::new())),
            digits: 0,
        })
    }
}

/// A compiled grammar following the output token by token.
pub struct GrammarConstraint {
    matcher: Matcher,
    env: TokEnv,
    /// The trigger and the output bytes so far, until the trigger shows.
    waiting: Option<(String, Vec<u8>)>,
    /// Digits at the end of the output.
    digits: usize,
}

impl GrammarConstraint {
    /// Forbids tokens that start with a digit once the output ends in [`MAX_DIGITS`] of them,
    /// unless nothing else is allowed.
    fn cap_digits(&self, logits: &mut [f32]) {
        let trie = self.env.tok_trie();
        let digit = |i: usize| trie.token(i as u32).first().is_some_and(u8::is_ascii_digit);
        let other = logits
            .iter()
            .enumerate()
            .any(|(i, l)| l.is_finite() && !digit(i));
        if other {
            for (i, l) in logits.iter_mut().enumerate() {
                if digit(i) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

impl Constraint for GrammarConstraint {
    fn is_active(&self) -> bool {
        self.waiting.is_none()
    }

    fn mask(&mut self, logits: &mut [f32], stop: &[u32]) -> Result<bool, String> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(first_line)?;
        let may_end = self
            .env
            .tok_trie()
            .eos_tokens()
            .iter()
            .any(|&t| allowed.is_allowed(t));
        // Word by word: most of a vocabulary is forbidden or allowed in runs of 32.
        let n = allowed.len().min(logits.len());
        let mut any = false;
        for (w, &bits) in allowed.as_slice().iter().enumerate() {
            let start = w * 32;
            if start >= n {
                break;
            }
            let run = &mut logits[start..(start + 32).min(n)];
            match bits {
                0 => run.fill(f32::NEG_INFINITY),
                u32::MAX => any |= run.iter().any(|l| *l > f32::NEG_INFINITY),
                _ => {
                    for (b, l) in run.iter_mut().enumerate() {
                        if bits >> b & 1 == 0 {
                            *l = f32::NEG_INFINITY;
                        } else {
                            any |= *l > f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        // Rows past the vocabulary (padding) are never text.
        logits[n..].fill(f32::NEG_INFINITY);
        // A stop token ends the answer only where the grammar may end (the tokenizer's own are
        // the grammar's end tokens already; a request's may be text).
        if !may_end {
            for &t in stop {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if any && self.digits >= MAX_DIGITS {
            self.cap_digits(logits);
        }
        Ok(any)
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        let bytes = self.env.tok_trie().token(token);
        for b in bytes {
            self.digits = if b.is_ascii_digit() {
                self.digits + 1
            } else {
                0
            };
        }
        let Some((trigger, seen)) = self.waiting.as_mut() else {
            return self.matcher.consume_token(token).map_err(first_line);
        };
        // Only the end can hold a trigger that was not there before.
        let from = seen.len().saturating_sub(trigger.len());
        seen.extend_from_slice(bytes);
        let Some(at) = find(&seen[from..], trigger.as_bytes()).map(|i| i + from) else {
            return Ok(());
        };
        // The grammar starts after the trigger; bytes of the same token past it are its start.
        let rest = seen[at + trigger.len()..].to_vec();
        self.waiting = None;
        if rest.is_empty() {
            return Ok(());
        }
        let tokens = self.env.tokenize_bytes(&rest);
        self.matcher.consume_tokens(&tokens).map_err(first_line)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
