//! Chinese: the reference `ChineseCangjieConverter` (`models/tokenizers/tokenizer.py`).
//!
//! Every character of general category `Lo` that the Cangjie table knows becomes its code
//! spelt as tokens: each code letter `x` as `[cj_x]`, then, when the glyph is not the first
//! one the table lists under that code, the digits of its position (`[cj_1]`, `[cj_2]`,
//! ... `[cj_2][cj_4]` for 24), then `[cj_.]`. Everything else stays as it is.
//!
//! Before that the reference segments the text into words with pkuseg (when `spacy_pkuseg`
//! and its model are available) and joins the words with spaces (which become `[SPACE]`
//! tokens). pkuseg's model cannot be shipped here; with segmentation on, jieba (`jieba-rs`,
//! its default dictionary, HMM for unknown words) stands in for it, on the same input
//! pkuseg gets (the text stripped and split at whitespace, each piece cut on its own).

use std::collections::HashMap;
use std::path::Path;

use super::python;
use crate::error::{Error, Result};

/// A glyph -> Cangjie token string table, built from `Cangjie5_TC.json`.
#[derive(Debug, Clone, Default)]
pub struct CangjieTable {
    /// For each single-character entry: the token string the reference produces.
    glyphs: HashMap<char, String>,
}

impl CangjieTable {
    /// Reads `Cangjie5_TC.json` (a JSON list of `"glyph\tcode[\t...]"` strings).
    pub fn from_file(path: &Path) -> Result<CangjieTable> {
        let bytes = crate::limits::read_capped(
            path,
            crate::limits::MAX_TOKENIZER_BYTES,
            "a Cangjie table",
        )?;
        CangjieTable::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a `Cangjie5_TC.json`; `origin` names it in errors.
    ///
    /// The table is built as the reference builds its dictionaries: `word2cj[word] = code`
    /// (a later entry for the same word wins) and `cj2word[code]` lists the words in file
    /// order (duplicates included); the index suffix of a glyph is the position of its
    /// first occurrence in `cj2word[word2cj[glyph]]`. A malformed entry (no tab, not a
    /// string) is an error here, where the reference logs a warning and keeps the entries
    /// before it.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<CangjieTable> {
        let entries: Vec<String> = serde_json::from_slice(bytes).map_err(|e| {
            Error::bundle(
                origin,
                format!("not a Cangjie table (a JSON list of \"glyph<TAB>code\" strings): {e}"),
            )
        })?;
        let mut word2cj: HashMap<&str, &str> = HashMap::new();
        let mut cj2word: HashMap<&str, Vec<&str>> = HashMap::new();
        for (n, entry) in entries.iter().enumerate() {
            let mut parts = entry.split('\t');
            let word = parts.next().unwrap_or_default();
            let code = parts.next().ok_or_else(|| {
                Error::bundle(
                    origin,
                    format!("entry {n} ({entry:?}) has no tab between glyph and code"),
                )
            })?;
            word2cj.insert(word, code);
            cj2word.entry(code).or_default().push(word);
        }
        let mut glyphs = HashMap::new();
        for (word, code) in word2cj {
            let mut chars = word.chars();
            let (Some(glyph), None) = (chars.next(), chars.next()) else {
                continue; // only single glyphs are ever looked up
            };
            let index = cj2word[code]
                .iter()
                .position(|w| *w == word)
                .unwrap_or_default();
            let mut spelt = String::with_capacity(7 * (code.len() + 2));
            let suffix = if index > 0 {
                index.to_string()
            } else {
                String::new()
            };
            for c in code.chars().chain(suffix.chars()) {
                spelt.push_str("[cj_");
                spelt.push(c);
                spelt.push(']');
            }
            spelt.push_str("[cj_.]");
            glyphs.insert(glyph, spelt);
        }
        Ok(CangjieTable { glyphs })
    }

    /// Number of glyphs with a code.
    pub fn len(&self) -> usize {
        self.glyphs.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.glyphs.is_empty()
    }

    /// The token string of one glyph (`_cangjie_encode` spelt as tokens), if it has a code.
    pub fn encode_glyph(&self, glyph: char) -> Option<&str> {
        self.glyphs.get(&glyph).map(String::as_str)
    }

    /// The reference converter's `__call__`: `segmenter` None is the path without pkuseg.
    pub fn convert(&self, text: &str, segmenter: Option<&jieba_rs::Jieba>) -> String {
        let segmented;
        let text = match segmenter {
            Some(jieba) => {
                segmented = segment(text, jieba);
                segmented.as_str()
            }
            None => text,
        };
        let mut out = String::with_capacity(text.len() * 4);
        for c in text.chars() {
            match python::is_other_letter(c)
                .then(|| self.encode_glyph(c))
                .flatten()
            {
                Some(spelt) => out.push_str(spelt),
                None => out.push(c),
            }
        }
        out
    }
}

/// `" ".join(segmenter.cut(text))` with jieba standing in for pkuseg: like pkuseg's `cut`,
/// the text is stripped and split at whitespace, and each piece is segmented on its own.
pub fn segment(text: &str, jieba: &jieba_rs::Jieba) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for piece in python::split_whitespace(python::strip(text)) {
        for token in jieba.cut(piece, true) {
            if token.word.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(token.word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(json: &str) -> CangjieTable {
        CangjieTable::from_bytes(json.as_bytes(), Path::new("t.json")).unwrap()
    }

    #[test]
    fn index_suffix_and_last_entry_wins() {
        let t =
            table(r#"["日\ta", "曰\ta", "字字\tab", "明\tab", "明\tzz\textra", "明\tab", "x\t"]"#);
        assert_eq!(t.encode_glyph('日'), Some("[cj_a][cj_.]"));
        assert_eq!(t.encode_glyph('曰'), Some("[cj_a][cj_1][cj_.]"));
        // the last entry of 明 is under "ab", where its first occurrence is position 1
        assert_eq!(t.encode_glyph('明'), Some("[cj_a][cj_b][cj_1][cj_.]"));
        assert_eq!(t.encode_glyph('x'), Some("[cj_.]"));
        assert_eq!(t.encode_glyph('字'), None);
        assert_eq!(
            t.convert("日a明?", None),
            "[cj_a][cj_.]a[cj_a][cj_b][cj_1][cj_.]?"
        );
        // 'x' is not 'Lo', so it is never looked up
        assert_eq!(t.convert("x", None), "x");
    }

    #[test]
    fn multi_digit_index() {
        let mut entries: Vec<String> = (0..12)
            .map(|i| format!("{}\tq", char::from_u32(0x4e00 + i).unwrap()))
            .collect();
        entries.push("乙\tq".into());
        let t = table(&serde_json::to_string(&entries).unwrap());
        assert_eq!(t.encode_glyph('\u{4e0b}'), Some("[cj_q][cj_1][cj_1][cj_.]"));
    }

    #[test]
    fn malformed_tables_are_errors() {
        for bad in [
            r#"["日a"]"#,
            r#"[1]"#,
            r#"{"a": 1}"#,
            "",
            "[",
            r#"["日\ta"] x"#,
        ] {
            let e = CangjieTable::from_bytes(bad.as_bytes(), Path::new("t.json")).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Bundle, "{bad}");
        }
        assert!(table("[]").is_empty());
    }
}
