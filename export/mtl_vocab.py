"""Builds the test vocabulary files of the multilingual (23-language) Chatterbox model.

The upstream tokenizer (`grapheme_mtl_merged_expanded_v1.json`) and Cangjie table
(`Cangjie5_TC.json`) of ResembleAI/chatterbox cannot be downloaded in the build
environment, so this script makes stand-ins with the same structure, deterministically:

* `tokenizer.json`: a HuggingFace `tokenizers` file shaped like the English one
  (BPE model over single graphemes, no merges, `Whitespace` pre-tokenizer, bracketed
  tokens as added special tokens) with exactly 2454 ids (T3Config.multilingual):
  `[STOP]`=0, `[UNK]`=1, `[SPACE]`=2, `[START]`=255, graphemes of all 23 languages after
  `str.lower()` + NFKD, then `[PAD] [SEP] [CLS] [MASK]`, the 23 language tags `[xx]`,
  the Cangjie tokens `[cj_a]`..`[cj_z]`, `[cj_0]`..`[cj_9]` (index suffixes) and `[cj_.]`,
  and placeholder tokens up to 2454.
* `Cangjie5_TC.json`: the upstream format (a JSON list of "glyph<TAB>code" strings) with
  real Cangjie 5 codes taken from Debian's ibus-table-cangjie5 table (cangjie5.db, whose
  cangjie5 data is "freely redistributable without restriction"), restricted to the codes
  of the Chinese glyphs of the golden sentences and corpus. For every such code, all
  single glyphs the table gives that code are listed (most frequent first), so glyphs
  that share a code appear and the reference's index suffix is exercised; glyphs with
  several codes are listed under each, as in the upstream file.

Usage (export venv):
    $PY export/mtl_vocab.py --cangjie-db /tmp/cj/x/usr/share/ibus-table/tables/cangjie5.db \
        --out onnx/tiny-multilingual
The cangjie5.db comes from `apt-get download ibus-table-cangjie5` + `dpkg-deb -x`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl_sentences import SENTENCES  # noqa: E402

VOCAB_SIZE = 2454
START_ID = 255
LANGUAGES = [
    "ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja",
    "ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh",
]
REPO = Path(__file__).resolve().parent.parent
CORPUS_ZH = REPO / "tests" / "data" / "mtl_frontend" / "corpus_zh.txt"
# Left out of the Cangjie table on purpose: a Han glyph without a code stays itself
# (and, not being in the vocabulary, becomes [UNK]), as in the reference.
NO_CODE = {"龘"}

# Code point ranges whose characters, after str.lower() + NFKD, give the graphemes.
SOURCE_RANGES = [
    (0x0021, 0x007E),  # ASCII
    (0x00A1, 0x024F),  # Latin-1 supplement, Latin extended A/B
    (0x0250, 0x02FF),  # IPA, spacing modifier letters
    (0x0300, 0x036F),  # combining diacritical marks
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x052F),  # Cyrillic (+ supplement)
    (0x0590, 0x05FF),  # Hebrew
    (0x0600, 0x06FF),  # Arabic
    (0x0900, 0x097F),  # Devanagari
    (0x1100, 0x11FF),  # Hangul conjoining jamo
    (0x1E00, 0x1EFF),  # Latin extended additional (Vietnamese etc., decompose)
    (0x1F00, 0x1FFF),  # Greek extended (polytonic, decompose)
    (0x2010, 0x205E),  # general punctuation
    (0x20A0, 0x20BF),  # currency
    (0x2100, 0x214F),  # letterlike symbols
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x309F),  # hiragana (incl. U+3099/U+309A)
    (0x30A0, 0x30FF),  # katakana
    (0x3130, 0x318F),  # Hangul compatibility jamo (NFKD: conjoining jamo)
    (0xFB1D, 0xFB4F),  # Hebrew presentation forms
    (0xFE70, 0xFEFC),  # Arabic presentation forms B
    (0xFF01, 0xFFEF),  # fullwidth / halfwidth forms
]
EXCLUDED_CATEGORIES = {"Cn", "Cc", "Cs", "Co", "Zs", "Zl", "Zp"}


def graphemes() -> list[str]:
    found: set[str] = set()
    for lo, hi in SOURCE_RANGES:
        for cp in range(lo, hi + 1):
            for ch in unicodedata.normalize("NFKD", chr(cp).lower()):
                if unicodedata.category(ch) in EXCLUDED_CATEGORIES or ch.isspace():
                    continue
                found.add(ch)
    return sorted(found)


def build_tokenizer() -> dict:
    specials_front = ["[STOP]", "[UNK]", "[SPACE]"]
    specials_back = ["[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    lang_tags = [f"[{lang}]" for lang in LANGUAGES]
    cj_tokens = [f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz0123456789."]
    added = specials_front + ["[START]"] + specials_back + lang_tags + cj_tokens

    vocab: dict[str, int] = {}
    next_id = 0

    def push(tok: str) -> None:
        nonlocal next_id
        if next_id == START_ID:
            vocab["[START]"] = START_ID
            next_id += 1
        assert tok not in vocab, tok
        vocab[tok] = next_id
        next_id += 1

    for tok in specials_front:
        push(tok)
    for g in graphemes():
        push(g)
    for tok in specials_back + lang_tags + cj_tokens:
        push(tok)
    n_real = next_id
    if n_real > VOCAB_SIZE:
        raise SystemExit(f"{n_real} tokens do not fit in {VOCAB_SIZE}")
    i = 0
    while next_id < VOCAB_SIZE:
        push(f"[unused_{i}]")
        i += 1
    assert vocab["[START]"] == START_ID and vocab["[STOP]"] == 0
    assert sorted(vocab.values()) == list(range(VOCAB_SIZE))

    added_tokens = [
        {
            "id": vocab[tok],
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for tok in sorted(added, key=lambda t: vocab[t])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "[UNK]",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def chinese_glyphs() -> list[str]:
    texts = list(SENTENCES["zh"]) + CORPUS_ZH.read_text(encoding="utf-8").splitlines()
    glyphs: set[str] = set()
    for t in texts:
        for ch in unicodedata.normalize("NFKD", t.lower()):
            if unicodedata.category(ch) == "Lo" and ch not in NO_CODE:
                glyphs.add(ch)
    return sorted(glyphs)


def build_cangjie(db_path: Path) -> list[str]:
    db = sqlite3.connect(str(db_path))
    rows = db.execute("select id, tabkeys, phrase, freq from phrases").fetchall()
    rows = [r for r in rows if len(r[2]) == 1 and r[1].isascii() and r[1].isalpha() and r[1].islower()]
    codes_of: dict[str, list[str]] = {}
    glyphs_of: dict[str, list[tuple[int, int, str]]] = {}
    for rid, code, glyph, freq in rows:
        codes_of.setdefault(glyph, []).append(code)
        glyphs_of.setdefault(code, []).append((-freq, rid, glyph))
    wanted_codes: set[str] = set()
    missing = []
    for g in chinese_glyphs():
        if g not in codes_of:
            missing.append(g)
            continue
        wanted_codes.update(codes_of[g])
    if missing:
        print(f"no Cangjie code for: {''.join(missing)} (they stay as themselves)", file=sys.stderr)
    entries = []
    for code in sorted(wanted_codes):
        seen = set()
        for _, _, glyph in sorted(glyphs_of[code]):
            if glyph not in seen:
                seen.add(glyph)
                entries.append(f"{glyph}\t{code}")
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cangjie-db", type=Path, required=True, help="cangjie5.db of ibus-table-cangjie5")
    ap.add_argument("--out", type=Path, default=REPO / "onnx" / "tiny-multilingual")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer()
    (args.out / "tokenizer.json").write_text(
        json.dumps(tok, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    cj = build_cangjie(args.cangjie_db)
    (args.out / "Cangjie5_TC.json").write_text(
        json.dumps(cj, ensure_ascii=False, indent=0) + "\n", encoding="utf-8"
    )
    real = sum(1 for t in tok["model"]["vocab"] if not t.startswith("[unused_"))
    print(f"tokenizer.json: {len(tok['model']['vocab'])} ids ({real} real), Cangjie5_TC.json: {len(cj)} entries")


if __name__ == "__main__":
    main()
