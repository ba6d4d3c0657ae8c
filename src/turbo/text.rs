//! Turbo's text front-end: its `punc_norm` (a shorter replacement table than the
//! original model's) and its GPT-2 byte-level BPE tokenizer with the paralinguistic
//! tags (`[laugh]`, `[chuckle]`, ...) as added tokens. The reference
//! (`ChatterboxTurboTTS.generate`) calls `tokenizer(punc_norm(text)).input_ids`: no
//! start/stop text tokens are added.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Turbo's `punc_norm` replacements (`chatterbox/tts_turbo.py`), in order. Unlike the
/// original model's, `...`, ` - ` and `;` are left as they are.
pub const PUNCTUATION_REPLACEMENTS: [(&str, &str); 9] = [
    ("\u{2026}", ", "),
    (":", ","),
    ("\u{2014}", "-"),
    ("\u{2013}", "-"),
    (" ,", ","),
    ("\u{201c}", "\""),
    ("\u{201d}", "\""),
    ("\u{2018}", "'"),
    ("\u{2019}", "'"),
];

/// Turbo's `punc_norm`.
pub fn punc_norm(text: &str) -> String {
    crate::text::punc_norm_with(text, &PUNCTUATION_REPLACEMENTS)
}

/// The GPT-2 tokenizer of a Turbo bundle (`tokenizer.json`, a HuggingFace fast
/// tokenizer file, run through the `tokenizers` crate).
pub struct TurboTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    vocab_size: usize,
    tags: Vec<String>,
}

impl std::fmt::Debug for TurboTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurboTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .field("tags", &self.tags.len())
            .finish()
    }
}

impl TurboTokenizer {
    /// Loads `tokenizer.json`; every tag of the manifest must be a token of it, and
    /// every id below `vocab_size` (50276).
    pub fn from_file(path: &Path, vocab_size: usize, tags: &[String]) -> Result<TurboTokenizer> {
        let bytes =
            crate::limits::read_capped(path, crate::limits::MAX_TOKENIZER_BYTES, "a tokenizer")?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::bundle(path, format!("not a valid tokenizer.json: {e}")))?;
        for tag in tags {
            match inner.token_to_id(tag) {
                Some(id) if (id as usize) < vocab_size => {}
                Some(id) => {
                    return Err(Error::bundle(
                        path,
                        format!(
                            "tag `{tag}` has id {id}, outside the text vocabulary of {vocab_size}"
                        ),
                    ))
                }
                None => {
                    return Err(Error::bundle(
                        path,
                        format!(
                            "the manifest lists tag `{tag}` but the tokenizer has no such token"
                        ),
                    ))
                }
            }
        }
        Ok(TurboTokenizer {
            inner,
            path: path.to_path_buf(),
            vocab_size,
            tags: tags.to_vec(),
        })
    }

    /// The paralinguistic tags, in id order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// `tokenizer(text).input_ids`. Errors (`Bundle`) if an id falls outside the
    /// vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::bundle(&self.path, format!("tokenizer failed on the text: {e}")))?;
        encoding
            .get_ids()
            .iter()
            .map(|&id| {
                if (id as usize) < self.vocab_size {
                    Ok(i64::from(id))
                } else {
                    Err(Error::bundle(
                        &self.path,
                        format!(
                            "tokenizer produced id {id}, outside the text vocabulary of {}",
                            self.vocab_size
                        ),
                    ))
                }
            })
            .collect()
    }

    /// The number of ids [`TurboTokenizer::encode`] produces for `text`.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.len())
    }

    /// Bracketed words in `text` that look like tags (`[word]` or `[two words]`,
    /// letters and spaces only) but are not one of the model's tags: the reference
    /// reads them as ordinary text, which is rarely what the writer meant.
    pub fn unknown_tags(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            let Some(close) = after.find(']') else { break };
            let inner = &after[..close];
            let looks_like_tag = !inner.is_empty()
                && inner.len() <= 32
                && inner
                    .chars()
                    .all(|c| c.is_alphabetic() || c == ' ' || c == '_' || c == '-');
            let tag = format!("[{inner}]");
            if looks_like_tag && !self.tags.contains(&tag) && !out.contains(&tag) {
                out.push(tag);
            }
            rest = &after[close + 1..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, output of Turbo's reference `punc_norm`, run in the export venv).
    const CASES: &[(&str, &str)] = &[
        ("", "You need to add some text for me to talk."),
        ("hello world", "Hello world."),
        ("wait... what", "Wait... what."),
        ("Ellipsis\u{2026} here", "Ellipsis,  here."),
        ("Time: 10:30", "Time, 10,30."),
        ("a - b", "A - b."),
        ("semi; colon;", "Semi; colon;."),
        ("em\u{2014}dash", "Em-dash."),
        ("space , comma", "Space, comma."),
        ("\u{201c}Quoted\u{201d} [laugh]", "\"Quoted\" [laugh]."),
        ("trailing dash -", "Trailing dash -"),
    ];

    #[test]
    fn punc_norm_matches_turbo_reference() {
        for (input, expected) in CASES {
            assert_eq!(punc_norm(input), *expected, "input {input:?}");
        }
    }
}
