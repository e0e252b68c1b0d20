//! The answer cache's storage in IndexedDB ([`crate::router::AnswerCache`] does the rest): one
//! database beside the model store, an `answers` store of `chat.completion` texts and an `index`
//! store of their sizes and last use, which is all that is read at start.

use std::rc::Rc;

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use super::idb::{KeyValueDb, Write};
use crate::router::{AnswerStorage, Entry};

const ANSWERS: &str = "answers";
const INDEX: &str = "index";

/// Opened at first use.
#[derive(Default)]
pub struct IdbAnswers {
    db: std::cell::RefCell<Option<Rc<KeyValueDb>>>,
}

fn text_of(e: JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

fn number(v: &JsValue, field: &str) -> f64 {
    Reflect::get(v, &field.into())
        .ok()
        .and_then(|n| n.as_f64())
        .unwrap_or(0.0)
}

impl IdbAnswers {
    async fn db(&self) -> Result<Rc<KeyValueDb>, String> {
        if let Some(db) = self.db.borrow().clone() {
            return Ok(db);
        }
        let db = Rc::new(
            KeyValueDb::open("candlelight-answers", &[ANSWERS, INDEX])
                .await
                .map_err(text_of)?,
        );
        *self.db.borrow_mut() = Some(db.clone());
        Ok(db)
    }
}

impl AnswerStorage for IdbAnswers {
    async fn entries(&self) -> Result<Vec<Entry>, String> {
        let rows = self.db().await?.all(INDEX).await.map_err(text_of)?;
        Ok(rows
            .into_iter()
            .map(|(key, e)| Entry {
                key,
                bytes: number(&e, "bytes") as u64,
                used: number(&e, "used"),
            })
            .collect())
    }

    async fn text(&self, key: &str) -> Option<String> {
        self.db()
            .await
            .ok()?
            .get(ANSWERS, key)
            .await
            .ok()?
            .as_string()
    }

    async fn commit(
        &self,
        puts: &[(Entry, Option<String>)],
        deletes: &[String],
    ) -> Result<(), String> {
        let mut ops = Vec::new();
        for k in deletes {
            ops.push(Write(ANSWERS, k, None));
            ops.push(Write(INDEX, k, None));
        }
        for (e, text) in puts {
            let entry = Object::new();
            let _ = Reflect::set(&entry, &"bytes".into(), &(e.bytes as f64).into());
            let _ = Reflect::set(&entry, &"used".into(), &e.used.into());
            ops.push(Write(INDEX, &e.key, Some(entry.into())));
            if let Some(t) = text {
                ops.push(Write(ANSWERS, &e.key, Some(JsValue::from_str(t))));
            }
        }
        self.db().await?.write(&ops).await.map_err(text_of)
    }
}
