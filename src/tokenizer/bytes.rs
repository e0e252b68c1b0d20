//! The bytes each token stands for, which a grammar needs to know which tokens may come next:
//! byte-level BPE spells bytes as printable characters (GPT-2's table), SentencePiece writes
//! spaces as `▁` and unknown bytes as `<0xNN>`, and special tokens have no text at all.

use super::Tokenizer;

/// How a vocabulary writes bytes in its token texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    ByteLevel,
    SentencePiece,
}

/// Marks a special token in [`Tokenizer::token_bytes`], as llguidance's token trie expects.
pub const SPECIAL: u8 = 0xFF;

impl Tokenizer {
    /// Every token's bytes, by id. Special (control) tokens are [`SPECIAL`] followed by their
    /// text, so no text can spell them.
    pub fn token_bytes(&self) -> Vec<Vec<u8>> {
        let added = self.inner.get_added_tokens_decoder();
        let byte_of = byte_level_table();
        (0..self.vocab_size() as u32)
            .map(|id| {
                let Some(text) = self.inner.id_to_token(id) else {
                    return vec![SPECIAL];
                };
                match added.get(&id) {
                    Some(t) if t.special => [&[SPECIAL], text.as_bytes()].concat(),
                    Some(_) => text.into_bytes(),
                    None => match self.spelling {
                        Spelling::ByteLevel => text
                            .chars()
                            .flat_map(|c| match byte_of(c) {
                                Some(b) => vec![b],
                                None => c.to_string().into_bytes(),
                            })
                            .collect(),
                        Spelling::SentencePiece => sentencepiece_bytes(&text),
                    },
                }
            })
            .collect()
    }
}

/// GPT-2's byte ↔ character table, inverted: printable Latin-1 bytes stand for themselves, the
/// rest were shifted to U+0100 onwards in byte order.
fn byte_level_table() -> impl Fn(char) -> Option<u8> {
    let mut table = [None; 512];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            u32::from(b)
        } else {
            shifted += 1;
            255 + shifted
        };
        table[c as usize] = Some(b);
    }
    move |c: char| table.get(c as usize).copied().flatten()
}

fn sentencepiece_bytes(text: &str) -> Vec<u8> {
    let hex = text
        .strip_prefix("<0x")
        .and_then(|t| t.strip_suffix('>'))
        .filter(|h| h.len() == 2);
    if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
        return vec![b];
    }
    text.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_characters_map_back_to_their_bytes() {
        let byte_of = byte_level_table();
        assert_eq!(byte_of('a'), Some(b'a'));
        assert_eq!(byte_of('\u{120}'), Some(b' '));
        assert_eq!(byte_of('\u{10A}'), Some(b'\n'));
        assert_eq!(byte_of('\u{100}'), Some(0));
        assert_eq!(byte_of('\u{143}'), Some(0xAD));
        assert_eq!(byte_of('\u{4E00}'), None);
    }

    #[test]
    fn sentencepiece_spaces_and_byte_tokens() {
        assert_eq!(sentencepiece_bytes("\u{2581}the"), b" the");
        assert_eq!(sentencepiece_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_bytes("<0xE4>"), [0xE4]);
        assert_eq!(sentencepiece_bytes("<0xZZ>"), b"<0xZZ>");
    }
}
