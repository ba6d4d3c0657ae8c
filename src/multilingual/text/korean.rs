//! Korean: the reference `korean_normalize` (`models/tokenizers/tokenizer.py`).
//!
//! It splits each code point of U+AC00..=U+D7AF into conjoining jamo with the Hangul
//! formula and strips surrounding whitespace. The NFKD step before it has already
//! decomposed every Hangul syllable (U+AC00..=U+D7A3), so in practice only the
//! unassigned U+D7A4..=U+D7AF reach the formula (as in the reference) and the visible
//! effect is the `strip()`.

use super::python;

/// Code points the reference decomposes (`'\uac00' <= char <= '\ud7af'`).
const SYLLABLE_RANGE: std::ops::RangeInclusive<char> = '\u{ac00}'..='\u{d7af}';

/// `korean_normalize(text)`.
pub fn korean_normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for c in text.chars() {
        if !SYLLABLE_RANGE.contains(&c) {
            out.push(c);
            continue;
        }
        let base = c as u32 - 0xAC00;
        let jamo = [
            Some(0x1100 + base / (21 * 28)),
            Some(0x1161 + (base % (21 * 28)) / 28),
            (!base.is_multiple_of(28)).then_some(0x11A7 + base % 28),
        ];
        // Every value lies in U+1100..=U+11C2, all valid scalar values.
        out.extend(jamo.into_iter().flatten().filter_map(char::from_u32));
    }
    python::strip(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposes_and_strips() {
        // 한 = U+1112 U+1161 U+11AB; 가 has no final consonant.
        assert_eq!(
            korean_normalize(" 한가 "),
            "\u{1112}\u{1161}\u{11ab}\u{1100}\u{1161}"
        );
        // Unassigned code points after the last syllable still go through the formula.
        assert_eq!(korean_normalize("\u{d7af}"), "\u{1113}\u{1161}\u{11b2}");
        assert_eq!(korean_normalize("\t\u{1100}\u{1161}\n"), "\u{1100}\u{1161}");
        assert_eq!(korean_normalize("   "), "");
        assert_eq!(korean_normalize("abc"), "abc");
    }
}
