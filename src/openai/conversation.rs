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
    /// Counts the saves: 1 for the first. A save names the revision it was made from, so one
    /// made from an older copy (another tab's, a stale one) is refused, not written over.
    pub revision: u64,
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
    pub revision: u64,
    pub messages: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConversationError {
    #[error("a message has the role {0:?}; conversations hold system, developer, user, assistant and tool messages")]
    Role(String),
    #[error("the conversation is {0} bytes, over the {MAX_BYTES}-byte limit")]
    TooLarge(usize),
    /// The store holds another revision than the one the save (or delete) was made from.
    #[error("{}", conflict_text(.id, *.read, *.stored))]
    Conflict {
        id: String,
        read: u64,
        stored: Option<u64>,
    },
}

fn conflict_text(id: &str, read: u64, stored: Option<u64>) -> String {
    let since = match read {
        0 => "it was read".to_string(),
        r => format!("revision {r}"),
    };
    match stored {
        Some(s) => format!("conversation {id} was saved elsewhere since {since}: the store holds revision {s}; load it again"),
        None => format!("conversation {id} was deleted elsewhere since {since}"),
    }
}

impl ConversationError {
    /// The revision the store holds, for a conflict: 0 when it holds none.
    pub fn stored_revision(&self) -> Option<u64> {
        match self {
            Self::Conflict { stored, .. } => Some(stored.unwrap_or(0)),
            _ => None,
        }
    }
}

impl Conversation {
    /// Checks a conversation an app saves and fills in what it left out: the id (from
    /// `new_id`) and the title. The times and the revision come from [`Conversation::revise`].
    pub fn prepare(&mut self, new_id: impl FnOnce() -> String) -> Result<(), ConversationError> {
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
        Ok(())
    }

    /// Stamps a save against what the store holds under its id, inside the transaction that
    /// writes it. The save must name the revision it was made from: none (or 0) for one not
    /// stored yet. It then gets the next revision, keeps the stored creation time unless it
    /// gives its own, and is updated at `now`. A record from before revisions counts as 0.
    pub fn revise(
        &mut self,
        stored: Option<&Conversation>,
        now: f64,
    ) -> Result<(), ConversationError> {
        check_revision(&self.id, self.revision, stored)?;
        // Saturating: a record another script wrote with the largest revision must not wrap to 0.
        self.revision = stored.map_or(0, |s| s.revision).saturating_add(1);
        if self.created == 0.0 {
            self.created = stored.map_or(now, |s| s.created);
        }
        self.updated = now;
        Ok(())
    }

    pub fn summary(&self) -> Summary {
        Summary {
            id: self.id.clone(),
            title: self.title.clone(),
            updated: self.updated,
            revision: self.revision,
            messages: self.messages.len(),
        }
    }
}

/// Whether a save or delete made from revision `read` of conversation `id` may go ahead over
/// what the store holds: only when that is still the revision read (0: none stored).
pub fn check_revision(
    id: &str,
    read: u64,
    stored: Option<&Conversation>,
) -> Result<(), ConversationError> {
    let held = stored.map(|s| s.revision);
    if read == held.unwrap_or(0) {
        return Ok(());
    }
    Err(ConversationError::Conflict {
        id: id.to_string(),
        read,
        stored: held,
    })
}
