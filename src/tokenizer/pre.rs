//! `tokenizer.ggml.pre` names → the regex splits llama.cpp applies before byte-level BPE.

use super::TokenizerError;

/// How a byte-level BPE vocabulary splits text before merging.
pub(super) struct PreTokenizer {
    pub regexes: &'static [&'static str],
    /// Take a whole pre-token as one token when the vocabulary has it (Llama 3).
    pub ignore_merges: bool,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK3: [&str; 3] = [
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const SMOLLM: [&str; 2] = [
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
];
/// llama.cpp's fallback for files that name no pre-tokenizer.
const DEFAULT: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

pub(super) fn for_name(name: &str) -> Result<PreTokenizer, TokenizerError> {
    let (regexes, ignore_merges): (&'static [&'static str], bool) = match name {
        "default" => (&DEFAULT, false),
        "gpt-2" | "gpt2" | "phi-2" => (std::slice::from_ref(&GPT2), false),
        "llama-bpe" | "llama3" | "llama-v3" => (std::slice::from_ref(&LLAMA3), true),
        "qwen2" | "deepseek-r1-qwen" => (std::slice::from_ref(&QWEN2), false),
        "deepseek-v3" => (&DEEPSEEK3, false),
        "smollm" | "starcoder" => (&SMOLLM, false),
        other => return Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
    };
    Ok(PreTokenizer {
        regexes,
        ignore_merges,
    })
}
