//! The model's vocabulary as llguidance sees it: a trie of every token's bytes, and our
//! tokenizer for the text a grammar forces.

use std::sync::Arc;

use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::tokenizer::Tokenizer;

struct Vocab {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Vocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Our tokenizer's split where it spells exactly these bytes; a SentencePiece one adds a
        // leading space, and a forced prefix may end inside a character: then the trie's
        // greedy split, which spells any bytes.
        if let Ok(text) = std::str::from_utf8(s) {
            if let Ok(tokens) = self.tokenizer.encode(text, false) {
                let spelled: Vec<u8> = tokens
                    .iter()
                    .flat_map(|&t| self.trie.token(t).iter().copied())
                    .collect();
                if spelled == s {
                    return tokens;
                }
            }
        }
        self.trie.greedy_tokenize(s)
    }
}

/// The token environment of `tokenizer`: its stop tokens all end a grammar.
pub fn token_env(tokenizer: &Tokenizer) -> TokEnv {
    let words = tokenizer.token_bytes();
    let stops = tokenizer.stop_tokens();
    let eos = stops
        .first()
        .copied()
        .unwrap_or(words.len().saturating_sub(1) as u32);
    let info = TokRxInfo::new(words.len() as u32, eos);
    let mut trie = TokTrie::from(&info, &words);
    if !stops.is_empty() {
        trie = trie.with_eos_tokens(stops);
    }
    Arc::new(Vocab {
        trie,
        tokenizer: tokenizer.clone(),
    })
}
