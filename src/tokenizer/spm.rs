//! `llama`-type vocabularies (SentencePiece with scores: Llama 2, TinyLlama, Mistral). llama.cpp
//! merges the adjacent pair whose result scores highest; that is BPE with merges ranked by the
//! result's score, which is how this builds it, with byte fallback for unknown characters.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use super::{added_tokens, token_type, vocab_map, GgufVocab, TokenizerError};

const SPACE: &str = "\u{2581}";

pub(super) fn build(
    vocab: &GgufVocab,
    add_space_prefix: bool,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let scores = vocab.scores.as_ref().ok_or_else(|| {
        TokenizerError::BadVocab("llama vocabulary without tokenizer.ggml.scores".into())
    })?;
    let map = vocab_map(vocab)?;
    let mergeable = |id: u32| {
        matches!(
            vocab.types[id as usize],
            token_type::NORMAL | token_type::USER_DEFINED | token_type::UNUSED
        )
    };
    // Every way to write a token as two tokens is a merge, ranked by the token's score.
    let mut merges: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        let id = id as u32;
        if vocab.types[id as usize] != token_type::NORMAL {
            continue;
        }
        for (cut, _) in text.char_indices().skip(1) {
            let (a, b) = (&text[..cut], &text[cut..]);
            if let (Some(&ia), Some(&ib)) = (map.get(a), map.get(b)) {
                if mergeable(ia) && mergeable(ib) {
                    merges.push((scores[id as usize], id, ia, ib));
                }
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let pairs = merges
        .into_iter()
        .map(|(_, _, a, b)| {
            (
                vocab.tokens[a as usize].clone(),
                vocab.tokens[b as usize].clone(),
            )
        })
        .collect();
    let unk = vocab
        .types
        .iter()
        .position(|&t| t == token_type::UNKNOWN)
        .map(|i| vocab.tokens[i].clone());
    let mut builder = BPE::builder()
        .vocab_and_merges(map, pairs)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let model = builder
        .build()
        .map_err(|e| TokenizerError::Library(e.to_string()))?;
    let mut tok = tokenizers::Tokenizer::new(model);
    let mut norm: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        norm.push(Prepend::new(SPACE.to_string()).into());
    }
    norm.push(Replace::new(" ", SPACE)?.into());
    tok.with_normalizer(Some(NormalizerSequence::new(norm)));
    let mut dec: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE, " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        dec.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(dec)));
    tok.add_special_tokens(&added_tokens(vocab));
    Ok(tok)
}
