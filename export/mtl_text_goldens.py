"""Goldens of the multilingual text front-end, made with the reference (chatterbox-tts 0.1.7).

For every sentence of `mtl_sentences.SENTENCES` (23 languages) this records, from the
reference code itself:

* `punc_norm`: `chatterbox.mtl_tts.punc_norm(text)` (what `generate()` does first);
* `prepared`: the string `MTLTokenizer.encode` hands to the HF tokenizer, before its
  `[SPACE]` replacement: `preprocess_text` (lowercase + NFKD), the language step
  (Cangjie for zh, `hiragana_normalize` for ja, `korean_normalize` for ko, Hebrew
  diacritics for he, Russian stress for ru) and the `[xx]` tag;
* `ids`: `MTLTokenizer.encode(punc_norm, language_id)`, checked equal to
  `tokenizer.encode(prepared.replace(" ", "[SPACE]")).ids`.

What runs here, and so what the goldens show (the reference's own fallbacks):

* zh: WITHOUT word segmentation. `spacy_pkuseg` is installed but `pkuseg()` downloads
  its model from GitHub at first use, which is impossible here; the script hides the
  module (`sys.modules["spacy_pkuseg"] = None`), so `ChineseCangjieConverter` takes its
  `ImportError` path ("pkuseg not available - Chinese segmentation will be skipped").
* he: without diacritics (`dicta_onnx` is not installed: "dicta_onnx not available").
* ru: without stress marks (`russian_text_stresser` is not installed).
* The Cangjie table and tokenizer are the stand-ins of `onnx/tiny-multilingual`
  (`export/mtl_vocab.py`); `hf_hub_download` (which the reference calls for
  `Cangjie5_TC.json`) is replaced by a lookup next to `tokenizer.json`.

Also writes the Japanese corpus goldens (`corpus_ja.txt` -> `corpus_ja.json`) and the
Chinese corpus goldens without segmentation (`corpus_zh.txt` -> `corpus_zh.json`).

Usage: $PY export/mtl_text_goldens.py   (deterministic; rewrites tests/data/mtl_frontend/)
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from importlib.metadata import version
from pathlib import Path

sys.modules["spacy_pkuseg"] = None  # the reference's "pkuseg not available" path
logging.disable(logging.WARNING)  # the reference's fallback warnings

import chatterbox.models.tokenizers.tokenizer as reference  # noqa: E402
from chatterbox.mtl_tts import SUPPORTED_LANGUAGES, punc_norm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl_sentences import SENTENCES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "onnx" / "tiny-multilingual"
OUT = REPO / "tests" / "data" / "mtl_frontend"


def _local_hub_download(repo_id: str, filename: str, cache_dir=None, **_kw) -> str:
    path = Path(cache_dir) / filename
    if not path.is_file():
        raise FileNotFoundError(path)
    return str(path)


reference.hf_hub_download = _local_hub_download


def load_tokenizer() -> reference.MTLTokenizer:
    tok = reference.MTLTokenizer(str(BUNDLE / "tokenizer.json"))
    assert tok.cangjie_converter.word2cj, "the Cangjie table did not load"
    assert tok.cangjie_converter.segmenter is None, "pkuseg must be unavailable for these goldens"
    return tok


def prepared_text(tok: reference.MTLTokenizer, text: str, lang: str) -> str:
    """MTLTokenizer.encode up to (not including) the [SPACE] replacement, step by step."""
    txt = tok.preprocess_text(text, language_id=lang)
    if lang == "zh":
        txt = tok.cangjie_converter(txt)
    elif lang == "ja":
        txt = reference.hiragana_normalize(txt)
    elif lang == "he":
        txt = reference.add_hebrew_diacritics(txt)
    elif lang == "ko":
        txt = reference.korean_normalize(txt)
    elif lang == "ru":
        txt = reference.add_russian_stress(txt)
    return f"[{lang.lower()}]{txt}"


def record(tok: reference.MTLTokenizer, text: str, lang: str, normalise: bool = True) -> dict:
    normed = punc_norm(text) if normalise else text
    prepared = prepared_text(tok, normed, lang)
    ids = tok.encode(normed, language_id=lang)
    again = tok.tokenizer.encode(prepared.replace(" ", reference.SPACE)).ids
    assert ids == again, (lang, text)
    entry = {"language": lang, "text": text}
    if normalise:
        entry["punc_norm"] = normed
    entry["prepared"] = prepared
    entry["ids"] = ids
    return entry


# Inputs given to prepare/encode directly (no punc_norm): edge cases of the language steps.
RAW_CASES = [
    ("en", ""),
    ("en", "   "),
    ("ko", "  안녕 하세요  "),
    ("ko", "\t한국\n"),
    ("ja", ""),
    ("ja", "東京😀です"),
    ("ja", "龘あいう"),
    ("ja", "あ★い゛う"),
    ("ja", "カード ー 会社ー"),
    ("ja", "人々は色々な国へ行った"),
    ("ja", "abc漢字ABC"),
    ("zh", "   "),
    ("zh", "中文 English 混合"),
    ("en", "emoji 😀 and [en] tag [cj_a]"),
    ("el", "ΣΊΣΥΦΟΣ Σ ΑΣ"),
    ("tr", "İIıi"),
    ("de", "ﬁ ﬂ ½ ² Ⅻ ℃"),
    ("ar", "ﻻ ﷲ ٣"),
    ("hi", "क़ ड़ॉ"),
    ("ru", "ЁЖИК ёж"),
    ("he", "שָׁלוֹם"),
    ("fr", "ǅ ǆ Ǆ"),
]

# Inputs of the multilingual punc_norm (sentence enders include 、，。？！).
PUNC_NORM_CASES = [
    "",
    " ",
    "你好，",
    "你好。",
    "你好、",
    "本当？",
    "すごい！",
    "hello",
    "hello。。",
    "ßtraße",
    "ǆungla",
    "ΐ",
    "  leading space",
    "a...b…c:d;e—f–g “h” ‘i’",
    "x ,y",
    "ﬁne",
    "ŉ test",
]


# 256-code-point blocks of the scripts of the 23 languages, checked for Python's string
# semantics (str.lower, NFKD, category 'Lo', punc_norm's islower/upper of the first char).
UNICODE_BLOCKS = (
    list(range(0x0000, 0x0700, 0x100))  # Latin, IPA, Greek, Cyrillic, Armenian, Hebrew, Arabic
    + [0x0900, 0x1100, 0x1E00, 0x1F00, 0x2000, 0x2100]
    + list(range(0x3000, 0x3200, 0x100))
    + list(range(0x4E00, 0xA000, 0x100))
    + list(range(0xAC00, 0xD800, 0x100))
    + list(range(0xF900, 0x10000, 0x100))
)


def unicode_digests() -> dict:
    import hashlib

    functions = {
        "lower": lambda c: c.lower(),
        "nfkd": lambda c: unicodedata.normalize("NFKD", c),
        "other_letter": lambda c: "1" if unicodedata.category(c) == "Lo" else "0",
        "upper_if_lower": lambda c: c.upper() if c.islower() else "",
    }
    out = {}
    for name, f in functions.items():
        digests = {}
        for start in UNICODE_BLOCKS:
            h = hashlib.sha256()
            for cp in range(start, start + 0x100):
                if 0xD800 <= cp <= 0xDFFF:
                    continue
                h.update(f(chr(cp)).encode("utf-8") + b"\0")
            digests[f"{start:04X}"] = h.hexdigest()[:16]
        out[name] = digests
    return out


def header() -> dict:
    return {
        "generated_by": "export/mtl_text_goldens.py",
        "chatterbox-tts": version("chatterbox-tts"),
        "pykakasi": version("pykakasi"),
        "tokenizers": version("tokenizers"),
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "tokenizer_json": "onnx/tiny-multilingual/tokenizer.json (export/mtl_vocab.py)",
        "notes": [
            "zh without word segmentation (pkuseg's model cannot be downloaded: the reference's ImportError path)",
            "he without diacritics (dicta_onnx absent), ru without stress marks (russian_text_stresser absent)",
            "prepared = lowercase + NFKD + language step + [xx] tag, before ' ' -> [SPACE]",
        ],
    }


def corpus(tok, lang: str, name: str) -> None:
    lines = [ln for ln in (OUT / f"corpus_{name}.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    data = {"header": header(), "language": lang, "cases": [record(tok, ln, lang) for ln in lines]}
    write(OUT / f"corpus_{name}.json", data)


def write(path: Path, data: dict) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=1)
    # one line per id list
    text = re.sub(r"\[\n[\d,\n ]*\]", lambda m: "[" + ", ".join(m.group(0)[1:-1].split()).replace(",,", ",") + "]", text)
    assert json.loads(text) == data
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)}")


def main() -> None:
    tok = load_tokenizer()
    assert list(SENTENCES) == sorted(SUPPORTED_LANGUAGES) == list(SUPPORTED_LANGUAGES)
    cases = [record(tok, text, lang) for lang in SUPPORTED_LANGUAGES for text in SENTENCES[lang]]
    raw = [record(tok, text, lang, normalise=False) for lang, text in RAW_CASES]
    data = {
        "header": header(),
        "languages": [[k, v] for k, v in SUPPORTED_LANGUAGES.items()],
        "cases": cases,
        "raw_cases": raw,
        "punc_norm_cases": [[t, punc_norm(t)] for t in PUNC_NORM_CASES],
        "unicode_digests": unicode_digests(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "goldens.json", data)
    corpus(tok, "ja", "ja")
    corpus(tok, "zh", "zh")


if __name__ == "__main__":
    main()
