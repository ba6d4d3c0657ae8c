//! Token ids of the multilingual front-end for each line of stdin, as JSON lines.
//!
//! ```sh
//! cargo run --release --example mtl_tokenize -- --language ja --bundle onnx/tiny-multilingual < lines.txt
//! cargo run --release --example mtl_tokenize -- --language zh --tokenizer T.json --cangjie C.json --no-segmentation
//! ```
//!
//! Each output line is `{"punc_norm": ..., "prepared": ..., "ids": [...]}` (or
//! `{"error": ...}`), for the line after `punc_norm` unless `--raw` is given.
//! `export/measure_frontend.py` compares it with the reference.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chatterbox_ort::multilingual::text::{MtlTokenizer, TEXT_VOCAB_SIZE};

const USAGE: &str = "usage: mtl_tokenize --language XX (--bundle DIR | --tokenizer FILE --cangjie FILE) [--no-segmentation] [--raw]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtl_tokenize: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut language = None;
    let mut tokenizer = None;
    let mut cangjie = None;
    let mut segmentation = true;
    let mut raw = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--language" => language = Some(value("--language")?),
            "--bundle" => {
                let dir = PathBuf::from(value("--bundle")?);
                tokenizer = Some(dir.join("tokenizer.json"));
                cangjie = Some(dir.join("Cangjie5_TC.json"));
            }
            "--tokenizer" => tokenizer = Some(PathBuf::from(value("--tokenizer")?)),
            "--cangjie" => cangjie = Some(PathBuf::from(value("--cangjie")?)),
            "--no-segmentation" => segmentation = false,
            "--raw" => raw = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let (Some(language), Some(tokenizer), Some(cangjie)) = (language, tokenizer, cangjie) else {
        return Err(USAGE.to_string());
    };
    let mut tok = MtlTokenizer::from_files(&tokenizer, &cangjie, TEXT_VOCAB_SIZE)
        .map_err(|e| e.to_string())?;
    tok.set_chinese_segmentation(segmentation);
    let language = tok.check_language(&language).map_err(|e| e.to_string())?;

    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let text = if raw {
            line
        } else {
            MtlTokenizer::punc_norm(&line)
        };
        let record = match tok
            .prepare(&text, &language)
            .and_then(|prepared| Ok((tok.encode(&text, &language)?, prepared)))
        {
            Ok((ids, prepared)) => {
                serde_json::json!({"punc_norm": text, "prepared": prepared, "ids": ids})
            }
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        writeln!(out, "{record}").map_err(|e| format!("writing stdout: {e}"))?;
    }
    Ok(())
}
