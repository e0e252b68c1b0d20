//! `gpt2`-type vocabularies: byte-level BPE with ranked merges (Qwen, Llama 3, DeepSeek).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::{added_tokens, pre, vocab_map, GgufVocab, TokenizerError};

pub(super) fn build(
    vocab: &GgufVocab,
    pre_name: &str,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let pre = pre::for_name(pre_name)?;
    let merges = vocab.merges.ok_or_else(|| {
        TokenizerError::BadVocab("gpt2 vocabulary without tokenizer.ggml.merges".into())
    })?;
    let mut pairs = Vec::with_capacity(merges.len());
    for m in merges {
        // llama.cpp splits at the first space after the first character.
        let cut = m
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(i, _)| i);
        let Some(cut) = cut else {
            return Err(TokenizerError::BadVocab(format!(
                "merge {m:?} has no separator"
            )));
        };
        pairs.push((m[..cut].to_string(), m[cut + 1..].to_string()));
    }
    let map = vocab_map(vocab)?;
    // Merges whose parts or result are missing would make the BPE builder fail; llama.cpp
    // ignores them when tokenizing, so drop them here too.
    pairs.retain(|(a, b)| {
        map.contains_key(a) && map.contains_key(b) && map.contains_key(&format!("{a}{b}"))
    });
    let model = BPE::builder()
        .vocab_and_merges(map, pairs)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::Library(e.to_string()))?;
    let mut tok = tokenizers::Tokenizer::new(model);
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in pre.regexes {
        steps.push(
            Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )?
            .into(),
        );
    }
    steps.push(ByteLevel::new(false, false, false).into());
    tok.with_pre_tokenizer(Some(Sequence::new(steps)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.add_special_tokens(&added_tokens(vocab));
    Ok(tok)
}
