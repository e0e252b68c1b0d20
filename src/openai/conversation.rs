//! A saved chat: the messages in the chat-completions shape, with an id, a title and times, as
//! an app keeps it (in IndexedDB in the browser) so that a reload resumes it.

use serde::{Deserialize, Serialize};

use super::ChatMessage;

/// A title is the first user message, cut to this many characters.
const TITLE_CHARS: usize = 60;
/// A conversation bigger than this (as JSON) is refused rather than stored.
pub const MAX_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub messages: Vec<ChatMessage>,
    /// Milliseconds since the epoch.
    pub created: f64,
    pub updated: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// What a list of conversations shows of each.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub id: String,
    pub title: String,
    pub updated: f64,
    pub messages: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConversationError {
    #[error("a message has the role {0:?}; conversations hold system, developer, user, assistant and tool messages")]
    Role(String),
    #[error("the conversation is {0} bytes, over the {MAX_BYTES}-byte limit")]
    TooLarge(usize),
}

impl Conversation {
    /// Checks a conversation an app saves and fills in what it left out: the id (from
    /// `new_id`), the title, and the times, at `now`.
    pub fn prepare(
        &mut self,
        now: f64,
        new_id: impl FnOnce() -> String,
    ) -> Result<(), ConversationError> {
        if let Some(m) = self.messages.iter().find(|m| {
            !matches!(
                m.role.as_str(),
                "system" | "developer" | "user" | "assistant" | "tool"
            )
        }) {
            return Err(ConversationError::Role(m.role.clone()));
        }
        let bytes = serde_json::to_vec(self).map_or(usize::MAX, |v| v.len());
        if bytes > MAX_BYTES {
            return Err(ConversationError::TooLarge(bytes));
        }
        if self.id.is_empty() {
            self.id = new_id();
        }
        if self.title.trim().is_empty() {
            let first = self
                .messages
                .iter()
                .find(|m| m.role == "user")
                .and_then(|m| m.content.text().ok())
                .unwrap_or_default();
            let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
            self.title = match line.char_indices().nth(TITLE_CHARS) {
                // Cut between words where there is a space to cut at.
                Some((cut, _)) => format!(
                    "{}…",
                    line[..cut]
                        .rsplit_once(' ')
                        .map_or(&line[..cut], |(head, _)| head)
                        .trim_end()
                ),
                None if line.is_empty() => "New chat".into(),
                None => line,
            };
        }
        if self.created == 0.0 {
            self.created = now;
        }
        self.updated = now;
        Ok(())
    }

    pub fn summary(&self) -> Summary {
        Summary {
            id: self.id.clone(),
            title: self.title.clone(),
            updated: self.updated,
            messages: self.messages.len(),
        }
    }
}
