//! Streaming split of `<think>…</think>` into reasoning and content, correct when a tag arrives
//! cut across tokens.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Text to append to the reasoning and to the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

impl Split {
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: a `<think>` here opens reasoning.
    Start,
    Reasoning,
    /// Reasoning closed; whitespace right after `</think>` is dropped.
    AfterThink,
    Content,
}

/// Feeds on generated text; gives back what belongs to reasoning and to content.
#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    state: State,
    pending: String,
}

impl ThinkSplitter {
    /// `in_think`: the prompt already opened `<think>` (DeepSeek-R1 templates do).
    pub fn new(in_think: bool) -> Self {
        Self {
            state: if in_think {
                State::Reasoning
            } else {
                State::Start
            },
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Split {
        self.pending.push_str(text);
        let mut out = Split::default();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.pending = rest.to_string();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(trimmed) {
                        return out; // maybe a cut `<think>`: wait
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => match self.pending.find(CLOSE) {
                    Some(i) => {
                        out.reasoning.push_str(&self.pending[..i]);
                        self.pending = self.pending[i + CLOSE.len()..].to_string();
                        self.state = State::AfterThink;
                    }
                    None => {
                        let keep = partial_suffix(&self.pending, CLOSE);
                        let cut = self.pending.len() - keep;
                        out.reasoning.push_str(&self.pending[..cut]);
                        self.pending = self.pending[cut..].to_string();
                        return out;
                    }
                },
                State::AfterThink => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        self.pending.clear();
                        return out;
                    }
                    self.pending = trimmed.to_string();
                    self.state = State::Content;
                }
                State::Content => {
                    out.content.push_str(&self.pending);
                    self.pending.clear();
                    return out;
                }
            }
        }
    }

    /// Whatever is still held back, at the end of generation.
    pub fn finish(&mut self) -> Split {
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Reasoning => Split {
                reasoning: rest,
                content: String::new(),
            },
            State::AfterThink => Split::default(),
            State::Start | State::Content => Split {
                reasoning: String::new(),
                content: rest,
            },
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`: text to hold back
/// while it may still become `tag`.
pub(crate) fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}
