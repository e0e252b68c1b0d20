//! Conversations kept in IndexedDB, so that a reload (or the next visit) resumes them: save,
//! list (most recent first), load and delete, for the demo and for any app.

use wasm_bindgen::prelude::*;

use super::idb::{KeyValueDb, Write};
use super::to_js;
use crate::openai::conversation::{Conversation, ConversationError, Summary, MAX_BYTES};
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
    let text = db.get(STORE, id).await.map_err(|e| storage(&e))?;
    Ok(text.as_string().and_then(|t| serde_json::from_str(&t).ok()))
}

/// Saves a conversation (`{id?, title?, messages, model?}`); resolves to its id, made up when
/// it had none.
#[wasm_bindgen(js_name = saveConversation)]
pub async fn save_conversation(conversation: JsValue) -> Result<String, JsValue> {
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
    let db = db().await?;
    if !c.id.is_empty() && c.created == 0.0 {
        c.created = read(&db, &c.id).await?.map_or(0.0, |old| old.created);
    }
    c.prepare(js_sys::Date::now(), new_id)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let text = serde_json::to_string(&c).map_err(|e| ApiError::internal(e.to_string()))?;
    db.write(&[Write(STORE, &c.id, Some(text.into()))])
        .await
        .map_err(|e| storage(&e))?;
    Ok(c.id)
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

/// Deletes a conversation; false when there was none.
#[wasm_bindgen(js_name = deleteConversation)]
pub async fn delete_conversation(id: String) -> Result<bool, JsValue> {
    let db = db().await?;
    let existed = read(&db, &id).await?.is_some();
    db.write(&[Write(STORE, &id, None)])
        .await
        .map_err(|e| storage(&e))?;
    Ok(existed)
}
