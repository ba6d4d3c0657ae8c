//! The T3 text tokenizer: the bundle's `tokenizer.json` run through the `tokenizers` crate,
//! encoding exactly like the reference `EnTokenizer.encode` (`models/tokenizers/tokenizer.py`).
//!
//! The reference replaces every ASCII space with the added token `[SPACE]` and encodes the
//! result (`add_special_tokens=True`; the checkpoint's tokenizer has no post-processor, so
//! nothing is added). Other whitespace (tabs, newlines) is split away by the pre-tokenizer,
//! exactly as in the reference; [`crate::text::normalize::punc_norm`] turns it into spaces
//! first anyway.
//!
//! Characters the 704-token vocabulary lacks (emoji, CJK, ...) become `[UNK]` (id 1), one
//! per character, exactly as in the reference; encoding never fails on them, the engine
//! synthesises around them, and a warning with their count is logged. A tokenizer without an `unk_token` drops them
//! silently (again like the reference). Special-token strings typed in the text (`[STOP]`,
//! `[START]`, ...) are matched as special tokens, as the reference does.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Start-of-text token string.
pub const START_TOKEN: &str = "[START]";
/// End-of-text token string.
pub const STOP_TOKEN: &str = "[STOP]";
/// Unknown-character token string.
pub const UNK_TOKEN: &str = "[UNK]";
/// The token that stands for a space.
pub const SPACE_TOKEN: &str = "[SPACE]";

/// The T3 text tokenizer of a bundle.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    vocab_size: usize,
    start_id: i64,
    stop_id: i64,
    unk_id: Option<i64>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .field("start_id", &self.start_id)
            .field("stop_id", &self.stop_id)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `path`; every id it produces must be `< vocab_size`
    /// (the T3 text vocabulary, 704 for Chatterbox).
    ///
    /// Errors: `Io` when the file cannot be read, `Bundle` (naming the file) when it is not
    /// a valid tokenizer or lacks `[START]` / `[STOP]`.
    pub fn from_file(path: &Path, vocab_size: usize) -> Result<TextTokenizer> {
        let bytes =
            crate::limits::read_capped(path, crate::limits::MAX_TOKENIZER_BYTES, "a tokenizer")?;
        TextTokenizer::from_bytes(&bytes, path, vocab_size)
    }

    /// Loads a tokenizer from the bytes of a `tokenizer.json`; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path, vocab_size: usize) -> Result<TextTokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::bundle(origin, format!("not a valid tokenizer.json: {e}")))?;
        let id = |token: &str| -> Result<i64> {
            let id = inner.token_to_id(token).ok_or_else(|| {
                Error::bundle(origin, format!("the tokenizer has no `{token}` token"))
            })?;
            let id = i64::from(id);
            if id as u64 >= vocab_size as u64 {
                return Err(Error::bundle(
                    origin,
                    format!(
                        "token `{token}` has id {id}, outside the text vocabulary of {vocab_size}"
                    ),
                ));
            }
            Ok(id)
        };
        let start_id = id(START_TOKEN)?;
        let stop_id = id(STOP_TOKEN)?;
        let unk_id = inner.token_to_id(UNK_TOKEN).map(i64::from);
        Ok(TextTokenizer {
            inner,
            path: origin.to_path_buf(),
            vocab_size,
            start_id,
            stop_id,
            unk_id,
        })
    }

    /// The file this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of `[START]`.
    pub fn start_id(&self) -> i64 {
        self.start_id
    }

    /// The id of `[STOP]`.
    pub fn stop_id(&self) -> i64 {
        self.stop_id
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Encodes `text` like the reference `EnTokenizer.encode`: spaces become `[SPACE]`, no
    /// start/stop tokens are added. Errors (`Bundle`) if an id falls outside the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let replaced = text.replace(' ', SPACE_TOKEN);
        let encoding = self
            .inner
            .encode(replaced.as_str(), true)
            .map_err(|e| Error::bundle(&self.path, format!("tokenizer failed on the text: {e}")))?;
        let mut ids = Vec::with_capacity(encoding.get_ids().len());
        let mut unknown = 0usize;
        for &id in encoding.get_ids() {
            let id = i64::from(id);
            if id as u64 >= self.vocab_size as u64 {
                return Err(Error::bundle(
                    &self.path,
                    format!(
                        "tokenizer produced id {id}, outside the text vocabulary of {}",
                        self.vocab_size
                    ),
                ));
            }
            if Some(id) == self.unk_id {
                unknown += 1;
            }
            ids.push(id);
        }
        if unknown > 0 {
            tracing::warn!(
                unknown,
                "text has {unknown} character(s) outside the tokenizer's vocabulary; they become [UNK]"
            );
        }
        Ok(ids)
    }

    /// `[START] + encode(text) + [STOP]`, the T3 text input of the reference `generate`.
    pub fn encode_with_start_stop(&self, text: &str) -> Result<Vec<i64>> {
        let ids = self.encode(text)?;
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.start_id);
        out.extend(ids);
        out.push(self.stop_id);
        Ok(out)
    }

    /// The number of ids [`TextTokenizer::encode`] produces for `text`.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let replaced = text.replace(' ', SPACE_TOKEN);
        let encoding = self
            .inner
            .encode(replaced.as_str(), true)
            .map_err(|e| Error::bundle(&self.path, format!("tokenizer failed on the text: {e}")))?;
        Ok(encoding.get_ids().len())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A small character-level BPE in the layout of the Chatterbox `tokenizer.json`
    /// (Whitespace pre-tokenizer, `[UNK]` unk token, special tokens as added tokens).
    /// Made by a script in the export venv; the expected ids below come from
    /// `tokenizers.Tokenizer.from_file(...).encode(text.replace(' ', '[SPACE]')).ids`.
    pub(crate) fn test_tokenizer_json() -> String {
        let mut vocab = vec![
            ("[STOP]".to_string(), 0),
            ("[UNK]".to_string(), 1),
            ("[SPACE]".to_string(), 2),
        ];
        let mut next = 3;
        let singles = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()";
        for c in singles.chars() {
            vocab.push((c.to_string(), next));
            next += 1;
        }
        let merges = [
            ("t", "h"),
            ("th", "e"),
            ("i", "n"),
            ("in", "g"),
            ("e", "r"),
            ("a", "n"),
            ("an", "d"),
            ("o", "u"),
            ("H", "e"),
            ("He", "l"),
            ("Hel", "l"),
            ("Hell", "o"),
        ];
        for (a, b) in merges {
            vocab.push((format!("{a}{b}"), next));
            next += 1;
        }
        vocab.push(("[START]".to_string(), 255));
        let vocab_json: Vec<String> = vocab
            .iter()
            .map(|(t, i)| format!("{}:{i}", serde_json::to_string(t).unwrap()))
            .collect();
        let merges_json: Vec<String> = merges.iter().map(|(a, b)| format!("\"{a} {b}\"")).collect();
        let added: Vec<String> = [("[STOP]", 0), ("[UNK]", 1), ("[SPACE]", 2), ("[START]", 255)]
            .iter()
            .map(|(t, i)| {
                format!(
                    r#"{{"id":{i},"content":"{t}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#
                )
            })
            .collect();
        format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{}],"normalizer":null,"pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,"model":{{"type":"BPE","dropout":null,"unk_token":"[UNK]","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{{{}}},"merges":[{}]}}}}"#,
            added.join(","),
            vocab_json.join(","),
            merges_json.join(",")
        )
    }

    pub(crate) fn test_tokenizer() -> TextTokenizer {
        TextTokenizer::from_bytes(
            test_tokenizer_json().as_bytes(),
            Path::new("test/tokenizer.json"),
            704,
        )
        .unwrap()
    }

    #[test]
    fn encodes_like_reference() {
        let t = test_tokenizer();
        let cases: &[(&str, &[i64])] = &[
            ("Hello there.", &[87, 2, 77, 20, 7, 65]),
            (
                "the thing and thing.",
                &[77, 2, 76, 79, 2, 82, 2, 76, 79, 65],
            ),
            ("Hello,  world!", &[87, 66, 2, 2, 25, 17, 20, 14, 6, 67]),
            (
                "Emoji \u{1f642} here.",
                &[33, 15, 17, 12, 11, 2, 1, 2, 10, 80, 7, 65],
            ),
            ("\u{4e2d}\u{6587} text.", &[1, 1, 2, 22, 7, 26, 22, 65]),
            ("x", &[26]),
            ("", &[]),
            ("Tab\tsep", &[48, 3, 4, 21, 7, 18]),
            (
                "Caf\u{e9} d\u{e9}j\u{e0} vu.",
                &[31, 3, 8, 1, 2, 6, 1, 12, 1, 2, 24, 23, 65],
            ),
            ("a  b", &[3, 2, 2, 4]),
            ("[START]hi", &[255, 10, 11]),
            ("Hello", &[87]),
        ];
        for (text, ids) in cases {
            assert_eq!(t.encode(text).unwrap(), ids.to_vec(), "{text:?}");
            assert_eq!(t.count_tokens(text).unwrap(), ids.len());
        }
        assert_eq!(t.encode_with_start_stop("Hello").unwrap(), vec![255, 87, 0]);
        assert_eq!(t.token_id("[SPACE]"), Some(2));
    }

    #[test]
    fn bad_files_are_bundle_errors_naming_the_file() {
        let p = Path::new("/b/tokenizer.json");
        let e = TextTokenizer::from_bytes(b"{not json", p, 704).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Bundle);
        assert!(e.to_string().contains("/b/tokenizer.json"), "{e}");

        let no_start = test_tokenizer_json().replace("[START]", "[BEGIN]");
        let e = TextTokenizer::from_bytes(no_start.as_bytes(), p, 704).unwrap_err();
        assert!(e.to_string().contains("[START]"), "{e}");

        // Ids at or above the vocabulary size are rejected.
        let e = TextTokenizer::from_bytes(test_tokenizer_json().as_bytes(), p, 200).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Bundle);
        // A vocabulary entry at or above the size surfaces when it is produced.
        let big_id = test_tokenizer_json().replace("\"Hello\":87", "\"Hello\":300");
        let small = TextTokenizer::from_bytes(big_id.as_bytes(), p, 256).unwrap();
        assert_eq!(small.encode("He").unwrap(), vec![84]);
        let e = small.encode("Hello").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Bundle);

        let e =
            TextTokenizer::from_file(Path::new("/nonexistent/tokenizer.json"), 704).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("/nonexistent/tokenizer.json"));
    }
}
