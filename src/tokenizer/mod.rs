//! Text ⇄ token ids. The tokenizer is built from the GGUF file's own vocabulary (one file is the
//! whole model), or from a `tokenizer.json` when one is given; both give a `tokenizers::Tokenizer`.

mod bpe;
mod bytes;
mod pre;
mod spm;

pub use bytes::Spelling;

use crate::gguf::{GgufError, GgufFile};

/// Failures building or running a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model {0:?} is not supported (gpt2 and llama are)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer {0:?} is not supported")]
    UnsupportedPreTokenizer(String),
    #[error("vocabulary is inconsistent: {0}")]
    BadVocab(String),
    #[error("tokenizer: {0}")]
    Library(String),
    /// A limit set against hostile files.
    #[error("{0}")]
    Limit(String),
}

/// Longest special (added) token taken, in bytes. Real ones are under 40 (`<|reserved_special_
/// token_250|>`, whitespace runs of 31); a 30 000-byte one made the matcher build for 52 s.
pub const MAX_SPECIAL_TOKEN_BYTES: usize = 256;

impl From<tokenizers::Error> for TokenizerError {
    fn from(e: tokenizers::Error) -> Self {
        TokenizerError::Library(e.to_string())
    }
}

/// GGUF token types (`tokenizer.ggml.token_type`).
pub(crate) mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const UNUSED: i64 = 5;
}

/// The vocabulary as GGUF stores it.
pub(crate) struct GgufVocab<'a> {
    pub tokens: &'a [String],
    pub types: Vec<i64>,
    pub scores: Option<Vec<f32>>,
    pub merges: Option<&'a [String]>,
}

/// Token texts that end a turn. llama.cpp treats these as control tokens and as end-of-generation
/// whatever type the file gives them (some converters store them as normal text), so we do too:
/// tokenization of text containing them must match.
const END_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
];

/// Fill-in-the-middle markers, also forced to control type by llama.cpp.
const FIM_TOKENS: &[&str] = &[
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
];

/// A tokenizer plus the special ids generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    add_bos: bool,
    eos: Option<u32>,
    stop_tokens: Vec<u32>,
    spelling: Spelling,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer the file describes under `tokenizer.ggml.*`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model = file.get_str("tokenizer.ggml.model")?;
        let tokens = file
            .get_array("tokenizer.ggml.tokens")?
            .as_strings()
            .ok_or_else(|| {
                TokenizerError::BadVocab("tokenizer.ggml.tokens is not a string array".into())
            })?;
        let n = tokens.len();
        let mut types = match file.get("tokenizer.ggml.token_type") {
            Some(_) => file
                .get_array("tokenizer.ggml.token_type")?
                .to_i64_vec()
                .ok_or_else(|| {
                    TokenizerError::BadVocab("token_type is not an integer array".into())
                })?,
            None => vec![token_type::NORMAL; n],
        };
        let scores = match file.get("tokenizer.ggml.scores") {
            Some(_) => Some(
                file.get_array("tokenizer.ggml.scores")?
                    .to_f32_vec()
                    .ok_or_else(|| {
                        TokenizerError::BadVocab("scores is not a number array".into())
                    })?,
            ),
            None => None,
        };
        let merges = match file.get("tokenizer.ggml.merges") {
            Some(_) => Some(
                file.get_array("tokenizer.ggml.merges")?
                    .as_strings()
                    .ok_or_else(|| {
                        TokenizerError::BadVocab("merges is not a string array".into())
                    })?,
            ),
            None => None,
        };
        if types.len() != n || scores.as_ref().is_some_and(|s| s.len() != n) {
            return Err(TokenizerError::BadVocab(format!(
                "{n} tokens but token types or scores of another length"
            )));
        }
        for (t, ty) in tokens.iter().zip(types.iter_mut()) {
            if END_TOKENS.contains(&t.as_str()) || FIM_TOKENS.contains(&t.as_str()) {
                *ty = token_type::CONTROL;
            }
        }
        check_special_lengths(tokens, &types)?;
        let vocab = GgufVocab {
            tokens,
            types,
            scores,
            merges,
        };
        let spelling = if model == "gpt2" {
            Spelling::ByteLevel
        } else {
            Spelling::SentencePiece
        };
        let inner = match model {
            "gpt2" => {
                let pre = match file.get("tokenizer.ggml.pre") {
                    Some(v) => v.as_str().unwrap_or("default"),
                    None => "default",
                };
                bpe::build(&vocab, pre)?
            }
            "llama" => {
                let add_space_prefix = file
                    .get("tokenizer.ggml.add_space_prefix")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true);
                spm::build(&vocab, add_space_prefix)?
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let id = |key: &str| -> Option<u32> {
            file.get(key)
                .and_then(|v| v.as_u64())
                .filter(|&i| (i as usize) < n)
                .map(|i| i as u32)
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let add_bos = file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(model == "llama");
        let mut stop_tokens: Vec<u32> = [
            eos,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, t) in tokens.iter().enumerate() {
            if END_TOKENS.contains(&t.as_str()) && !stop_tokens.contains(&(i as u32)) {
                stop_tokens.push(i as u32);
            }
        }
        Ok(Self {
            inner,
            bos,
            add_bos,
            eos,
            stop_tokens,
            spelling,
        })
    }

    /// Loads a Hugging Face `tokenizer.json`; BOS handling is then left to its post-processor.
    pub fn from_json(json: &[u8]) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json)?;
        let eos = END_TOKENS.iter().find_map(|t| inner.token_to_id(t));
        let spelling = if inner.token_to_id("\u{120}the").is_some() {
            Spelling::ByteLevel
        } else {
            Spelling::SentencePiece
        };
        Ok(Self {
            spelling,
            stop_tokens: eos.into_iter().collect(),
            inner,
            bos: None,
            add_bos: false,
            eos,
        })
    }

    /// Token ids for `text`. Special-token text (`<|im_start|>`) becomes the special token;
    /// `add_bos` prepends BOS where the model wants one.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode_fast(text, false)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`; control tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        Ok(self.inner.decode(ids, skip_special)?)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Tokens that end generation (EOS, EOT and the chat end markers the vocabulary has).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Added tokens, matched in text before anything else as llama.cpp does: control and unknown
/// tokens are special (dropped when decoding with skip), user-defined ones are ordinary text.
fn added_tokens(vocab: &GgufVocab) -> Vec<tokenizers::AddedToken> {
    vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .filter(|(_, &t)| is_added(t))
        .map(|(s, &t)| {
            tokenizers::AddedToken::from(s.clone(), t != token_type::USER_DEFINED).normalized(false)
        })
        .collect()
}

/// Whether a token of GGUF type `t` is matched in text before anything else (`added_tokens`).
fn is_added(t: i64) -> bool {
    matches!(
        t,
        token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
    )
}

/// Refuses added tokens past [`MAX_SPECIAL_TOKEN_BYTES`] before anything is built from them.
fn check_special_lengths(tokens: &[String], types: &[i64]) -> Result<(), TokenizerError> {
    match tokens
        .iter()
        .zip(types)
        .position(|(s, &t)| is_added(t) && s.len() > MAX_SPECIAL_TOKEN_BYTES)
    {
        Some(i) => Err(TokenizerError::Limit(format!(
            "special token {i} is {} bytes; at most {MAX_SPECIAL_TOKEN_BYTES} are taken",
            tokens[i].len()
        ))),
        None => Ok(()),
    }
}

fn vocab_map(vocab: &GgufVocab) -> Result<ahash::AHashMap<String, u32>, TokenizerError> {
    let mut map = ahash::AHashMap::with_capacity(vocab.tokens.len());
    for (i, t) in vocab.tokens.iter().enumerate() {
        // Duplicate texts happen (padding tokens); the first id keeps the text, like llama.cpp.
        map.entry(t.clone()).or_insert(i as u32);
    }
    if map.is_empty() {
        return Err(TokenizerError::BadVocab("no tokens".into()));
    }
    Ok(map)
}
