//! Japanese: the reference `hiragana_normalize` (`models/tokenizers/tokenizer.py`) on top
//! of the `kakasi` crate (a Rust port of pykakasi with its dictionary; GPL-3.0, hence the
//! cargo feature `japanese`).
//!
//! The reference runs `pykakasi.kakasi().convert(text)` on the lowercased NFKD text and
//! joins the segments: a segment with a kanji (U+4E00..=U+9FFF) becomes its hiragana
//! reading (with a space before it when the reading starts with は or へ), every other
//! segment stays as written; the result is NFKD-normalised again.
//!
//! The kakasi crate only converts whole strings, so pykakasi's segmentation is rebuilt
//! here: [`segments`] is pykakasi 2.3.0's `Kakasi.convert` loop (its character classes,
//! its buffer, and its quirks, which change the text: a kanji it has no reading for is
//! dropped together with the character after it, characters in U+F000..=U+FFFD and above
//! U+FFFF are dropped, and such a drop or an unclassified character repeats the pending
//! buffer). Only the dictionary lookup (`JConv.convert`: the longest dictionary word at a
//! kanji, and its reading) is asked of the crate, by [`dictionary_word`].
//!
//! Differences that remain: the two dictionaries (readings and word lists differ in
//! places), pykakasi's variant-kanji table outside U+3400..=U+DFFF (those characters are
//! treated as other characters here), and the one context-dependent reading. The agreement
//! is measured on `tests/data/mtl_frontend/corpus_ja.txt` (`tests/mtl_frontend.rs`).

use super::python;

/// pykakasi `JConv.isRegion` without the variant-kanji table: U+3400..U+E000.
fn is_dictionary_start(c: char) -> bool {
    ('\u{3400}'..'\u{e000}').contains(&c)
}

/// The reference's `is_kanji`: U+4E00..=U+9FFF.
fn is_kanji(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// pykakasi `Ch.endmark`.
const END_MARKS: &[char] = &[
    ')', ']', '!', ',', '.', '\u{3001}', '\u{3002}', '\u{ff1f}', '\u{ff10}', '\u{ff1e}', '\u{ff1c}',
];
/// pykakasi `Ch.long_symbols`: ー ― − ｰ.
const LONG_SYMBOLS: &[char] = &['\u{30fc}', '\u{2015}', '\u{2212}', '\u{ff70}'];

/// pykakasi `K2.isRegion`.
fn is_katakana_class(c: char) -> bool {
    let c = c as u32;
    (0x30A1..=0x30FC).contains(&c)
        || (0xFF66..=0xFF9E).contains(&c)
        || (0x1B164..=0x1B167).contains(&c)
}

/// pykakasi `H2.isRegion`.
fn is_hiragana_class(c: char) -> bool {
    let c = c as u32;
    (0x3041..=0x3096).contains(&c) || (0x1B150..=0x1B152).contains(&c)
}

/// pykakasi `A2.isRegion`: printable ASCII.
fn is_alpha_class(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// pykakasi `Sym2.isRegion`, including its 0x0391..=0x30A1 range (its constant for Greek
/// Rho is 0x30A1), which makes most of the BMP below katakana a symbol.
fn is_symbol_class(c: char) -> bool {
    let c = c as u32;
    (0x3000..=0x3020).contains(&c)
        || (0x3030..=0x303F).contains(&c)
        || (0x0391..=0x30A1).contains(&c)
        || (0x03B1..=0x03C9).contains(&c)
        || (0x0410..=0x044F).contains(&c)
        || (0xFF01..=0xFF1A).contains(&c)
        || (0x00A1..=0x00FF).contains(&c)
        || (0xFF20..=0xFF5E).contains(&c)
        || c == 0x0451
        || c == 0x0401
}

/// The characters pykakasi drops (its "PUA" branch).
fn is_dropped(c: char) -> bool {
    let c = c as u32;
    (0xF000..=0xFFFD).contains(&c) || (0x10000..=0x10FFFD).contains(&c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Kanji,
    Katakana,
    Hiragana,
    Symbol,
    Alpha,
}

/// One pykakasi output segment: the text as written and, for dictionary words, the
/// reading (`kana`; for other segments it is the text itself, or empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `orig`.
    pub orig: String,
    /// The kana pykakasi derives `hira` from.
    pub kana: String,
}

/// pykakasi 2.3.0 `Kakasi.convert(text)` segments; `lookup(rest)` answers `JConv.convert`
/// for the text starting at a character of U+3400..U+E000: the reading and the number of
/// characters of the longest dictionary word there, or None.
pub fn segments(
    text: &[char],
    mut lookup: impl FnMut(&[char]) -> Option<(String, usize)>,
) -> Vec<Segment> {
    enum Action {
        /// Output the buffer, start a new one with the character.
        StartNew,
        /// Append the character to the buffer.
        Append,
        /// Output the buffer, then the character on its own; empty buffer.
        OutputBoth,
    }
    let mut out = Vec::new();
    let mut orig = String::new();
    let mut kana = String::new();
    // pykakasi starts as if after a kanji
    let mut prev = Class::Kanji;
    // pykakasi outputs the buffer without emptying it in several branches
    let flush = |out: &mut Vec<Segment>, orig: &str, kana: &str| {
        if !orig.is_empty() {
            out.push(Segment {
                orig: orig.to_string(),
                kana: kana.to_string(),
            });
        }
    };
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let same_class = |prev: &mut Class, class: Class| {
            let same = *prev == class;
            *prev = class;
            if same {
                Action::Append
            } else {
                Action::StartNew
            }
        };
        let action = if END_MARKS.contains(&c) {
            prev = Class::Symbol;
            Action::StartNew
        } else if LONG_SYMBOLS.contains(&c) {
            Action::Append
        } else if is_katakana_class(c) {
            same_class(&mut prev, Class::Katakana)
        } else if is_hiragana_class(c) {
            same_class(&mut prev, Class::Hiragana)
        } else if is_alpha_class(c) {
            same_class(&mut prev, Class::Alpha)
        } else if is_symbol_class(c) {
            let was_symbol = prev == Class::Symbol;
            prev = Class::Symbol;
            if was_symbol {
                Action::OutputBoth
            } else {
                Action::StartNew
            }
        } else if is_dictionary_start(c) {
            flush(&mut out, &orig, &kana);
            prev = Class::Kanji;
            match lookup(&text[i..]) {
                Some((reading, n)) if n > 0 && i + n <= text.len() => {
                    orig = text[i..i + n].iter().collect();
                    kana = reading;
                    i += n;
                }
                _ => {
                    // no reading: output with empty kana, and skip the next character too
                    out.push(Segment {
                        orig: c.to_string(),
                        kana: String::new(),
                    });
                    orig.clear();
                    kana.clear();
                    i += 2;
                }
            }
            continue;
        } else if is_dropped(c) {
            prev = Class::Symbol;
            flush(&mut out, &orig, &kana);
            i += 1;
            continue;
        } else {
            flush(&mut out, &orig, &kana);
            out.push(Segment {
                orig: c.to_string(),
                kana: String::new(),
            });
            i += 1;
            continue;
        };
        match action {
            Action::StartNew => {
                flush(&mut out, &orig, &kana);
                orig.clear();
                kana.clear();
                orig.push(c);
                kana.push(c);
            }
            Action::Append => {
                orig.push(c);
                kana.push(c);
            }
            Action::OutputBoth => {
                flush(&mut out, &orig, &kana);
                out.push(Segment {
                    orig: c.to_string(),
                    kana: c.to_string(),
                });
                orig.clear();
                kana.clear();
            }
        }
        i += 1;
    }
    flush(&mut out, &orig, &kana);
    out
}

/// The reference's join of the segments (before its final NFKD).
pub fn join_segments(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        if s.orig.chars().any(is_kanji) {
            let hira = katakana_to_hiragana(&s.kana);
            if hira.starts_with(['は', 'へ']) {
                out.push(' ');
            }
            out.push_str(&hira);
        } else {
            out.push_str(&s.orig);
        }
    }
    out
}

/// pykakasi's katakana -> hiragana step on a reading (full-width katakana letters only;
/// readings from the dictionary are hiragana already).
fn katakana_to_hiragana(text: &str) -> String {
    text.chars()
        .map(|c| match c as u32 {
            cp @ 0x30A1..=0x30F6 => char::from_u32(cp - 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Characters a dictionary word can contain (kanji, kana, 々 〆 〜 ゝ ゞ); the window
/// handed to the kakasi crate stops at the first other character. Decomposed voiced
/// marks (U+3099, U+309A) stop it too: pykakasi sees them uncomposed (the text is NFKD)
/// and its words are composed, while the crate would compose them first.
fn in_word_window(c: char) -> bool {
    let cp = c as u32;
    is_dictionary_start(c)
        || (0x3041..=0x3096).contains(&cp)
        || (0x30A1..=0x30FC).contains(&cp)
        || matches!(cp, 0x3005 | 0x3006 | 0x301C | 0x309D | 0x309E)
}

/// pykakasi's longest word is 15 characters; one more for a following okurigana check.
const WINDOW: usize = 16;

/// A reading as the dictionary gives it: hiragana (with ー, ゝ, ゞ).
fn is_reading(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| matches!(c as u32, 0x3041..=0x3096 | 0x309D | 0x309E | 0x30FC))
}

/// `JConv.convert(rest, ...)` through the kakasi crate: the reading and length of the
/// longest dictionary word at the start of `rest`.
///
/// The crate converts a string in one go, so the word's length is found from its
/// outputs: a prefix of `n` characters is the crate's first word when converting the
/// prefix alone gives one romaji word whose hiragana is a dictionary reading, and that
/// reading followed by the conversion of the remaining window equals the conversion of
/// the whole window. The longest such prefix is the crate's own choice (a prefix longer
/// than its word would convert as more than one word).
pub fn dictionary_word(rest: &[char]) -> Option<(String, usize)> {
    let len = rest
        .iter()
        .take(WINDOW)
        .take_while(|&&c| in_word_window(c))
        .count();
    if len == 0 {
        return None;
    }
    let window: String = rest[..len].iter().collect();
    let whole = kakasi::convert(&window).hiragana;
    let mut boundaries: Vec<usize> = window.char_indices().map(|(b, _)| b).collect();
    boundaries.push(window.len());
    for n in (1..=len).rev() {
        let (head, tail) = window.split_at(boundaries[n]);
        let first = kakasi::convert(head);
        if !is_reading(&first.hiragana) || first.romaji.trim().contains(' ') {
            continue;
        }
        let rest_hira = if tail.is_empty() {
            String::new()
        } else {
            kakasi::convert(tail).hiragana
        };
        if whole.len() == first.hiragana.len() + rest_hira.len()
            && whole.starts_with(&first.hiragana)
            && whole.ends_with(&rest_hira)
        {
            return Some((first.hiragana, n));
        }
    }
    None
}

/// `hiragana_normalize(text)` of the reference (its input is lowercased NFKD text).
pub fn hiragana_normalize(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let segs = segments(&chars, dictionary_word);
    python::nfkd(&join_segments(&segs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake dictionary: 今日は, 今日, 母, 東京, 行く.
    fn fake(rest: &[char]) -> Option<(String, usize)> {
        let s: String = rest.iter().collect();
        for (word, reading) in [
            ("今日は", "こんにちは"),
            ("今日", "きょう"),
            ("母", "はは"),
            ("東京", "とうきょう"),
            ("行く", "いく"),
        ] {
            if s.starts_with(word) {
                return Some((reading.to_string(), word.chars().count()));
            }
        }
        None
    }

    fn run(text: &str) -> (Vec<(String, String)>, String) {
        let chars: Vec<char> = text.chars().collect();
        let segs = segments(&chars, fake);
        let joined = join_segments(&segs);
        (segs.into_iter().map(|s| (s.orig, s.kana)).collect(), joined)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn segments_like_pykakasi() {
        // Expected segments are pykakasi 2.3.0's on the same text (its dictionary agrees
        // with the fake one on these words).
        let (segs, joined) = run("今日は母へ行く");
        assert_eq!(
            segs,
            pairs(&[
                ("今日は", "こんにちは"),
                ("母", "はは"),
                ("へ", "へ"),
                ("行く", "いく")
            ])
        );
        assert_eq!(joined, "こんにちは ははへいく");
        // a dropped character repeats the pending buffer
        let (segs, joined) = run("東京😀です");
        assert_eq!(segs[0], segs[1]);
        assert_eq!(joined, "とうきょうとうきょうです");
        // an unknown kanji disappears with the next character
        assert_eq!(run("龘あいう").1, "いう");
        // katakana and symbols stay, a long mark joins the word before it
        assert_eq!(run("カード ー 東京ー").1, "カード ー とうきょうー");
        assert_eq!(run("").0, pairs(&[]));
        assert_eq!(run("abc東京ABC").1, "abcとうきょうABC");
    }

    #[test]
    fn symbol_runs() {
        let (segs, _) = run("「」。");
        assert_eq!(segs, pairs(&[("「", "「"), ("」", "」"), ("。", "。")]));
        let (segs, _) = run("あ\u{3099}い");
        assert_eq!(
            segs,
            pairs(&[("あ", "あ"), ("\u{3099}", "\u{3099}"), ("い", "い")])
        );
    }
}
