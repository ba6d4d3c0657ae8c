"""Agreement of the Rust multilingual front-end with the reference MTLTokenizer.

Reads a corpus (one sentence a line), runs the reference for a language
(`punc_norm` of `mtl_tts.py`, then `MTLTokenizer.encode(text, language)`), runs the Rust
front-end on the same lines (`examples/mtl_tokenize.rs`) and reports the share of
sentences whose token ids are equal, with the first differences.

Meant for a full reference environment (chatterbox-tts 0.1.7 with pykakasi, and, for
Chinese, spacy-pkuseg with its model), where it measures what cannot be measured in the
build environment: Chinese word segmentation (jieba in Rust vs pkuseg), and Hebrew /
Russian if dicta-onnx / russian-text-stresser are installed (the Rust side has neither).

    $PY export/measure_frontend.py --language ja --corpus tests/data/mtl_frontend/corpus_ja.txt \
        --tokenizer onnx/tiny-multilingual/tokenizer.json --cangjie onnx/tiny-multilingual/Cangjie5_TC.json
    $PY export/measure_frontend.py --language zh --corpus tests/data/mtl_frontend/corpus_zh.txt \
        --tokenizer grapheme_mtl_merged_expanded_v1.json --cangjie Cangjie5_TC.json

`--no-segmentation` makes the reference skip pkuseg (its ImportError path) and the Rust side
skip jieba. `--rust-bin PATH` uses a built `mtl_tokenize` instead of `cargo run --release
--example mtl_tokenize`. Exit status 0; the report goes to stdout (`--json` for a JSON report).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def reference_ids(lang: str, lines: list[str], tokenizer: Path, cangjie: Path, segmentation: bool):
    if not segmentation:
        sys.modules["spacy_pkuseg"] = None  # the reference's "pkuseg not available" path
    logging.disable(logging.WARNING)
    import chatterbox.models.tokenizers.tokenizer as reference
    from chatterbox.mtl_tts import punc_norm

    # the reference downloads Cangjie5_TC.json from the hub: use the given file instead
    reference.hf_hub_download = lambda repo_id, filename, cache_dir=None, **kw: str(cangjie)
    tok = reference.MTLTokenizer(str(tokenizer))
    if lang == "zh":
        seg = tok.cangjie_converter.segmenter
        print(f"reference Chinese segmentation: {'pkuseg' if seg is not None else 'off'}", file=sys.stderr)
    out = []
    for line in lines:
        text = punc_norm(line)
        out.append((text, tok.encode(text, language_id=lang)))
    return out


def rust_ids(lang: str, lines: list[str], tokenizer: Path, cangjie: Path, segmentation: bool, rust_bin):
    args = ["--language", lang, "--tokenizer", str(tokenizer), "--cangjie", str(cangjie)]
    if not segmentation:
        args.append("--no-segmentation")
    if rust_bin:
        cmd = [str(rust_bin), *args]
    else:
        cmd = ["cargo", "run", "--quiet", "--release", "--example", "mtl_tokenize", "--", *args]
    proc = subprocess.run(
        cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=REPO, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"mtl_tokenize failed ({proc.returncode}):\n{proc.stderr}")
    records = [json.loads(ln) for ln in proc.stdout.splitlines()]
    if len(records) != len(lines):
        raise SystemExit(f"mtl_tokenize gave {len(records)} lines for {len(lines)}")
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--language", required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, required=True, help="the bundle's tokenizer.json")
    ap.add_argument("--cangjie", type=Path, required=True, help="Cangjie5_TC.json")
    ap.add_argument("--no-segmentation", action="store_true")
    ap.add_argument("--rust-bin", type=Path)
    ap.add_argument("--show", type=int, default=10, help="differences to print")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    lang = args.language.lower()
    lines = [ln for ln in args.corpus.read_text(encoding="utf-8").splitlines() if ln.strip()]
    seg = not args.no_segmentation
    ref = reference_ids(lang, lines, args.tokenizer.resolve(), args.cangjie.resolve(), seg)
    ours = rust_ids(lang, lines, args.tokenizer.resolve(), args.cangjie.resolve(), seg, args.rust_bin)

    diffs = []
    for line, (normed, ids), rec in zip(lines, ref, ours):
        if rec.get("ids") != ids:
            diffs.append({"text": line, "punc_norm": normed, "reference": ids, "rust": rec})
    equal = len(lines) - len(diffs)
    report = {
        "language": lang,
        "corpus": str(args.corpus),
        "segmentation": seg,
        "sentences": len(lines),
        "equal": equal,
        "rate": equal / len(lines) if lines else 1.0,
        "differences": diffs[: args.show],
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return
    print(f"{lang}: {equal}/{len(lines)} sentences with equal token ids ({100 * report['rate']:.1f}%)"
          f", segmentation {'on' if seg else 'off'}")
    for d in diffs[: args.show]:
        print(f"- {d['text']}\n  rust prepared: {d['rust'].get('prepared', d['rust'].get('error'))}")


if __name__ == "__main__":
    main()
