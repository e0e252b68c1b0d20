//! Conversations kept in IndexedDB, so that a reload (or the next visit) resumes them: save,
//! list (most recent first), load and delete, for the demo and for any app.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::idb::{Decision, KeyValueDb};
use super::to_js;
use crate::openai::conversation::{
    check_revision, Conversation, ConversationError, Summary, MAX_BYTES,
};
use crate::openai::{ApiError, ErrorCode};

const STORE: &str = "conversations";

async fn db() -> Result<KeyValueDb, JsValue> {
    KeyValueDb::open("candlelight-conversations", &[STORE])
        .await
        .map_err(|e| storage(&e))
}

fn storage(e: &JsValue) -> JsValue {
    ApiError::new(
        ErrorCode::Storage,
        format!(
            "conversations: {}",
            e.as_string().unwrap_or_else(|| format!("{e:?}"))
        ),
    )
    .into()
}

/// A random id: 128 bits in hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No crypto: time and Math.random still make a collision unlikely for one user's chats.
        bytes[..8].copy_from_slice(&js_sys::Date::now().to_bits().to_le_bytes());
        bytes[8..].copy_from_slice(&js_sys::Math::random().to_bits().to_le_bytes());
    }
    crate::hex::encode(&bytes)
}

async fn read(db: &KeyValueDb, id: &str) -> Result<Option<Conversation>, JsValue> {
    Ok(parse(&db.get(STORE, id).await.map_err(|e| storage(&e))?))
}

/// A stored record; none when it is missing or does not parse (it is then written over).
fn parse(record: &JsValue) -> Option<Conversation> {
    record
        .as_string()
        .and_then(|t| serde_json::from_str(&t).ok())
}

fn refused(e: ConversationError) -> ApiError {
    match e.stored_revision() {
        Some(stored) => {
            ApiError::new(ErrorCode::Conflict, e.to_string()).with_number("revision", stored as f64)
        }
        None => ApiError::invalid(e.to_string()),
    }
}

/// Runs `decide` on the stored record of `id` inside one readwrite transaction and writes what
/// it gives. Its own refusal comes back as it is; a failure of the store as `storage`.
async fn update<T: 'static>(
    db: &KeyValueDb,
    id: &str,
    mut decide: impl FnMut(Option<Conversation>) -> Result<(Decision, T), ApiError> + 'static,
) -> Result<T, JsValue> {
    let outcome = Rc::new(RefCell::new(None));
    let out = outcome.clone();
    let written = db
        .update(STORE, id, move |record| match decide(parse(&record)) {
            Ok((decision, value)) => {
                *out.borrow_mut() = Some(Ok(value));
                Ok(decision)
            }
            Err(e) => {
                *out.borrow_mut() = Some(Err(e));
                Err(JsValue::from_str("refused"))
            }
        })
        .await;
    let decided = outcome.borrow_mut().take();
    match (decided, written) {
        (Some(Err(e)), _) => Err(e.into()),
        (Some(Ok(value)), Ok(())) => Ok(value),
        (_, Err(e)) => Err(storage(&e)),
        (None, Ok(())) => {
            Err(ApiError::internal("conversations: the transaction never read").into())
        }
    }
}

#[derive(Serialize)]
struct Saved {
    id: String,
    revision: u64,
}

/// Saves a conversation (`{id?, title?, messages, model?, revision?}`) and resolves to its
/// `{id, revision}`; the id is made up when it had none. A conversation already stored must be
/// saved from the revision it was loaded (or last saved) at: the check and the write are one
/// transaction, so of two tabs saving from one revision, one gets `conflict`.
#[wasm_bindgen(js_name = saveConversation)]
pub async fn save_conversation(conversation: JsValue) -> Result<JsValue, JsValue> {
    // Through JSON, as an app would store it: fields set to undefined are simply absent.
    let text = js_sys::JSON::stringify(&conversation)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_default();
    if text.len() > MAX_BYTES {
        return Err(ApiError::invalid(ConversationError::TooLarge(text.len()).to_string()).into());
    }
    let mut c: Conversation =
        serde_json::from_str(&text).map_err(|e| ApiError::invalid(format!("conversation: {e}")))?;
    c.prepare(new_id)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let db = db().await?;
    let id = c.id.clone();
    let now = js_sys::Date::now();
    let saved = update(&db, &id, move |stored| {
        c.revise(stored.as_ref(), now).map_err(refused)?;
        let text = serde_json::to_string(&c).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((Decision::Put(text.into()), c.revision))
    })
    .await?;
    to_js(&Saved {
        id,
        revision: saved,
    })
}

/// Every kept conversation's id, title, last update and message count, most recent first.
#[wasm_bindgen(js_name = listConversations)]
pub async fn list_conversations() -> Result<JsValue, JsValue> {
    let db = db().await?;
    let mut all: Vec<Summary> = db
        .all(STORE)
        .await
        .map_err(|e| storage(&e))?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_str::<Conversation>(&v.as_string()?).ok())
        .map(|c| c.summary())
        .collect();
    all.sort_by(|a, b| b.updated.total_cmp(&a.updated));
    to_js(&all)
}

/// The conversation with this id, or null.
#[wasm_bindgen(js_name = loadConversation)]
pub async fn load_conversation(id: String) -> Result<JsValue, JsValue> {
    match read(&db().await?, &id).await? {
        Some(c) => to_js(&c),
        None => Ok(JsValue::NULL),
    }
}

/// Deletes a conversation; false when there was none. Given the revision it was loaded at, it
/// deletes only that revision (`conflict` when another tab saved since).
#[wasm_bindgen(js_name = deleteConversation)]
pub async fn delete_conversation(id: String, revision: Option<f64>) -> Result<bool, JsValue> {
    let read = match revision {
        None => None,
        Some(r) if r >= 0.0 && r.fract() == 0.0 && r <= MAX_SAFE_INTEGER => Some(r as u64),
        Some(r) => {
            return Err(ApiError::invalid(format!(
                "revision: {r} is not a revision (a whole number from 0)"
            ))
            .with_text("param", "revision")
            .into())
        }
    };
    let db = db().await?;
    let key = id.clone();
    update(&db, &key, move |stored| match (&stored, read) {
        (None, _) => Ok((Decision::Keep, false)),
        (Some(_), Some(read)) => {
            check_revision(&id, read, stored.as_ref()).map_err(refused)?;
            Ok((Decision::Delete, true))
        }
        (Some(_), None) => Ok((Decision::Delete, true)),
    })
    .await
}

/// 2^53 - 1: the largest whole number a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
