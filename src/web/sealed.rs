//! Opening sealed model files (store/sealed.rs) with WebCrypto: the app's `decryptionKey`, a
//! `CryptoKey` for AES-GCM (it may be non-extractable) or the key's 32 bytes, imported once.

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::openai::ApiError;
use crate::store::sealed::ChunkCipher;

/// `crypto.subtle` and the key.
pub struct WebCryptoKey {
    subtle: JsValue,
    key: JsValue,
}

fn subtle() -> Result<JsValue, ApiError> {
    Reflect::get(&js_sys::global(), &"crypto".into())
        .and_then(|c| Reflect::get(&c, &"subtle".into()))
        .ok()
        .filter(|s| !s.is_undefined())
        .ok_or_else(|| ApiError::invalid("decryptionKey needs WebCrypto (a secure context)"))
}

async fn call(subtle: &JsValue, method: &str, args: &Array) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(subtle, &method.into())?.dyn_into()?;
    let promise: js_sys::Promise = f.apply(subtle, args)?.dyn_into()?;
    JsFuture::from(promise).await
}

impl WebCryptoKey {
    /// The key from `decryptionKey`: a CryptoKey as it is, raw bytes imported (not extractable).
    pub async fn from_js(value: &JsValue) -> Result<Self, ApiError> {
        let subtle = subtle()?;
        let bytes = value.dyn_ref::<Uint8Array>().cloned().or_else(|| {
            value
                .dyn_ref::<js_sys::ArrayBuffer>()
                .map(|b| Uint8Array::new(b))
        });
        let key = match bytes {
            None => value.clone(),
            Some(raw) if raw.length() == 32 => {
                let usages = Array::of1(&"decrypt".into());
                let args = Array::of5(
                    &"raw".into(),
                    &raw,
                    &"AES-GCM".into(),
                    &false.into(),
                    &usages,
                );
                call(&subtle, "importKey", &args)
                    .await
                    .map_err(|_| ApiError::invalid("decryptionKey: the bytes are no AES key"))?
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "decryptionKey must be 32 bytes or a CryptoKey",
                ))
            }
        };
        Ok(Self { subtle, key })
    }
}

impl ChunkCipher for WebCryptoKey {
    async fn open(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let params = Object::new();
        Reflect::set(&params, &"name".into(), &"AES-GCM".into()).ok()?;
        Reflect::set(&params, &"iv".into(), &Uint8Array::from(&nonce[..])).ok()?;
        Reflect::set(&params, &"additionalData".into(), &Uint8Array::from(aad)).ok()?;
        let args = Array::of3(&params, &self.key, &Uint8Array::from(sealed));
        let plain = call(&self.subtle, "decrypt", &args).await.ok()?;
        Some(Uint8Array::new(&plain).to_vec())
    }
}
