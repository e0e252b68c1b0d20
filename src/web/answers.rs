//! Kept answers in IndexedDB, for the router's last resort ([`crate::router::cache`]): one
//! database beside the model store, an `answers` store of `chat.completion` texts and an `index`
//! store of their sizes and last use, which is all that is read at start.

use std::cell::RefCell;

use js_sys::{Object, Reflect};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use super::idb::{Db, Op};
use crate::router::cache::Lru;

const ANSWERS: &str = "answers";
const INDEX: &str = "index";

pub struct AnswerStore {
    db: Db,
    lru: RefCell<Lru>,
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// An index entry: `{bytes, used}`.
fn entry(bytes: usize, used: f64) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"bytes".into(), &(bytes as f64).into());
    let _ = Reflect::set(&o, &"used".into(), &used.into());
    o.into()
}

fn number(v: &JsValue, field: &str) -> f64 {
    Reflect::get(v, &field.into())
        .ok()
        .and_then(|n| n.as_f64())
        .unwrap_or(0.0)
}

impl AnswerStore {
    /// Opens the store and reads its index; `cap` bytes at most are kept.
    pub async fn open(cap: u64) -> Result<AnswerStore, JsValue> {
        let db = Db::open("candlelight-answers", &[ANSWERS, INDEX]).await?;
        let mut lru = Lru::new(cap);
        for (key, e) in db.all(INDEX).await? {
            lru.restore(key, number(&e, "bytes") as u64, number(&e, "used"));
        }
        // A cap lowered since the last start applies at once.
        let over = lru.fit();
        let deletes: Vec<Op> = over
            .iter()
            .flat_map(|k| [Op(ANSWERS, k, None), Op(INDEX, k, None)])
            .collect();
        db.write(&deletes).await?;
        Ok(AnswerStore {
            db,
            lru: RefCell::new(lru),
        })
    }

    /// The answer kept under `key`, now the most recently used.
    pub async fn get(&self, key: &str) -> Option<Value> {
        if !self.lru.borrow().contains(key) {
            return None;
        }
        let text = self.db.get(ANSWERS, key).await.ok()?.as_string()?;
        let t = now();
        self.lru.borrow_mut().touch(key, t);
        let _ = self
            .db
            .write(&[Op(INDEX, key, Some(entry(text.len(), t)))])
            .await;
        serde_json::from_str(&text).ok()
    }

    /// Keeps `answer` under `key`; returns how many older answers made room for it.
    pub async fn put(&self, key: &str, answer: &Value) -> Result<usize, JsValue> {
        let text = answer.to_string();
        let t = now();
        let evicted = self
            .lru
            .borrow_mut()
            .insert(key.to_string(), text.len() as u64, t);
        let mut ops: Vec<Op> = evicted
            .iter()
            .flat_map(|k| [Op(ANSWERS, k, None), Op(INDEX, k, None)])
            .collect();
        if self.lru.borrow().contains(key) {
            ops.push(Op(INDEX, key, Some(entry(text.len(), t))));
            ops.push(Op(ANSWERS, key, Some(JsValue::from_str(&text))));
        }
        self.db.write(&ops).await?;
        Ok(evicted.iter().filter(|k| k.as_str() != key).count())
    }
}
