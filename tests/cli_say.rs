//! The `chatterbox-ort` CLI on the tiny bundle: success paths, and bad inputs
//! that must each give one error line, a non-zero exit and no output file.

mod pipeline_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pipeline_support::{
    bundle_dir, copy_bundle, edit_manifest, scratch, tone, write_f32, write_pcm16,
};

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");

/// Fast settings: random weights never stop, so the token budget is fixed.
const FAST: [&str; 4] = ["--max-new-tokens", "3", "--flow-steps", "1"];

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CHATTERBOX_ORT_BUNDLE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn chatterbox-ort");
    if let Some(data) = stdin {
        use std::io::Write;
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

fn bundle_arg() -> String {
    bundle_dir().display().to_string()
}

/// Asserts failure: non-zero exit, exactly one stderr line starting with
/// `error:` and containing `needle`, and no file at `out`.
fn assert_fails(out: &Output, needle: &str, file: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr:?}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "`{needle}` not in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !file.exists(),
        "output file left behind: {}",
        file.display()
    );
}

fn say(dir: &Path, extra: &[&str], stdin: Option<&[u8]>) -> (Output, PathBuf) {
    let out = dir.join("out.wav");
    let b = bundle_arg();
    let o = out.display().to_string();
    let mut args = vec!["say", "--bundle", b.as_str(), "-o", o.as_str()];
    args.extend_from_slice(extra);
    (run(&args, stdin), out)
}

fn wav_len(path: &Path) -> (u32, u16, usize) {
    let r = hound::WavReader::open(path).expect("open output wav");
    let spec = r.spec();
    (spec.sample_rate, spec.channels, r.len() as usize)
}

#[test]
fn say_writes_a_24k_wav_and_stats() {
    let dir = scratch("cli-ok");
    let mut extra = vec!["Hello from the tiny bundle.", "--seed", "5", "--stats"];
    extra.extend_from_slice(&FAST);
    let (out, wav) = say(&dir, &extra, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (sr, ch, n) = wav_len(&wav);
    assert_eq!((sr, ch), (24_000, 1));
    assert!(n > 0 && n % 960 == 0, "{n} samples");
    assert!(stderr.contains("RTF"), "{stderr}");
    let stats: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stats JSON on stdout");
    assert!(stats["stages"]["t3_s_per_token"].is_number());
    assert!(stats.get("host").is_some());
}

/// Without --format the output's extension picks the format; the file is what the library's
/// encoder makes of the samples of the WAV the same synthesis writes.
#[test]
fn say_picks_the_format_by_the_output_extension() {
    use chatterbox_ort::audio::encode::{encode, AudioFormat};
    let dir = scratch("cli-formats");
    let say_to = |output: &str, extra: &[&str]| {
        let b = bundle_arg();
        let mut args = vec![
            "say", "Formats.", "--seed", "3", "--bundle", &b, "-o", output,
        ];
        args.extend_from_slice(&FAST);
        args.extend_from_slice(extra);
        run(&args, None)
    };
    let path = |name: &str| dir.join(name).display().to_string();
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(say_to(&path("out.wav"), &[]));
    let wav = std::fs::read(path("out.wav")).unwrap();
    let r = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
    // The 16-bit samples as floats: every encoder quantises them back to the same values.
    let x: Vec<f32> = r
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32767.0)
        .collect();
    assert!(!x.is_empty());
    for (name, format) in [
        ("out.flac", AudioFormat::Flac),
        ("out.mp3", AudioFormat::Mp3),
        ("out.opus", AudioFormat::Opus),
        ("out.raw", AudioFormat::Pcm),
    ] {
        ok(say_to(&path(name), &[]));
        let bytes = std::fs::read(path(name)).unwrap();
        assert_eq!(bytes, encode(format, 24_000, &x).unwrap(), "{name}");
    }
    // --format wins over the extension; to stdout it is the same bytes.
    ok(say_to(&path("forced.mp3"), &["--format", "wav"]));
    assert_eq!(std::fs::read(path("forced.mp3")).unwrap(), wav);
    let out = ok(say_to("-", &["--format", "flac"]));
    assert_eq!(out.stdout, std::fs::read(path("out.flac")).unwrap());
    // --stream writes WAV or PCM only.
    let streamed = dir.join("streamed.mp3");
    let out = say_to(&path("streamed.mp3"), &["--stream"]);
    assert_fails(&out, "--stream writes wav or pcm, not mp3", &streamed);
}

#[test]
fn say_to_stdout_from_stdin() {
    let mut args = vec!["say", "--bundle"];
    let b = bundle_arg();
    args.push(&b);
    args.extend_from_slice(&["--text-file", "-", "-o", "-"]);
    args.extend_from_slice(&FAST);
    let out = run(&args, Some("Read from standard input.".as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = hound::WavReader::new(std::io::Cursor::new(out.stdout)).expect("WAV on stdout");
    assert_eq!(r.spec().sample_rate, 24_000);
}

#[test]
fn empty_and_whitespace_text_fail() {
    let dir = scratch("cli-empty");
    for t in ["", "   \t  "] {
        let (out, wav) = say(&dir, &[t], None);
        assert_fails(&out, "empty", &wav);
    }
    let f = dir.join("blank.txt");
    std::fs::write(&f, "\n\n   \n").unwrap();
    let fs = f.display().to_string();
    let (out, wav) = say(&dir, &["--text-file", &fs], None);
    assert_fails(&out, "empty", &wav);
}

#[test]
fn non_utf8_text_file_fails_naming_the_file() {
    let dir = scratch("cli-utf8");
    let f = dir.join("latin1.txt");
    std::fs::write(&f, b"caf\xe9 au lait").unwrap();
    let fs = f.display().to_string();
    let (out, wav) = say(&dir, &["--text-file", &fs], None);
    assert_fails(&out, "latin1.txt", &wav);
}

#[test]
fn huge_text_succeeds_chunked() {
    let dir = scratch("cli-huge");
    let sentence = "The quick brown fox jumps over the lazy dog near the riverbank today. ";
    let mut text = String::new();
    while text.len() < 100 * 1024 {
        text.push_str(sentence);
    }
    let f = dir.join("big.txt");
    std::fs::write(&f, &text).unwrap();
    let fs = f.display().to_string();
    // A 1 s reference keeps the S3Gen prompt (and so each chunk) small.
    let reference = dir.join("short-ref.wav");
    write_pcm16(&reference, &tone(1.0, 16_000), 16_000, 1);
    let rs = reference.display().to_string();
    let (out, wav) = say(
        &dir,
        &[
            "--text-file",
            &fs,
            "--voice",
            &rs,
            "--max-new-tokens",
            "1",
            "--flow-steps",
            "1",
            "--no-watermark",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wav_len(&wav).2 > 0);
}

#[test]
fn emoji_and_cjk_succeed() {
    let dir = scratch("cli-unicode");
    for t in ["Hello 👋 world 🌍!", "你好，世界。こんにちは。"] {
        let mut extra = vec![t];
        extra.extend_from_slice(&FAST);
        let (out, wav) = say(&dir, &extra, None);
        assert!(
            out.status.success(),
            "{t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(wav.exists());
        std::fs::remove_file(&wav).unwrap();
    }
}

/// Writes one test WAV at the given path.
type MakeWav = Box<dyn Fn(&Path)>;

#[test]
fn bad_reference_wavs_fail() {
    let dir = scratch("cli-badwav");
    let cases: Vec<(&str, MakeWav, &str)> = vec![
        (
            "trunc.wav",
            Box::new(|p: &Path| std::fs::write(p, b"RIFF\x24\x00\x00\x00WAVEfmt ").unwrap()),
            "trunc.wav",
        ),
        (
            "garbage.wav",
            Box::new(|p: &Path| std::fs::write(p, b"this is not audio at all").unwrap()),
            "garbage.wav",
        ),
        (
            "zero.wav",
            Box::new(|p: &Path| write_pcm16(p, &[], 16_000, 1)),
            "zero.wav",
        ),
        (
            "short.wav",
            Box::new(|p: &Path| write_pcm16(p, &tone(0.3, 16_000), 16_000, 1)),
            "short.wav",
        ),
        (
            "nan.wav",
            Box::new(|p: &Path| {
                let mut s = tone(1.0, 16_000);
                s[100] = f32::NAN;
                write_f32(p, &s, 16_000)
            }),
            "nan.wav",
        ),
        (
            "inf.wav",
            Box::new(|p: &Path| {
                let mut s = tone(1.0, 16_000);
                s[100] = f32::INFINITY;
                write_f32(p, &s, 16_000)
            }),
            "inf.wav",
        ),
        ("missing.wav", Box::new(|_: &Path| {}), "missing.wav"),
    ];
    for (name, make, needle) in cases {
        let p = dir.join(name);
        make(&p);
        let ps = p.display().to_string();
        let mut extra = vec!["Hi.", "--voice", ps.as_str()];
        extra.extend_from_slice(&FAST);
        let (out, wav) = say(&dir, &extra, None);
        assert_fails(&out, needle, &wav);
    }
}

#[test]
fn odd_rates_and_stereo_references_succeed() {
    let dir = scratch("cli-rates");
    let stereo: Vec<f32> = tone(1.5, 8_000)
        .into_iter()
        .flat_map(|s| [s, -s * 0.5])
        .collect();
    let s8 = dir.join("stereo8k.wav");
    write_pcm16(&s8, &stereo, 8_000, 2);
    let s192 = dir.join("hi192k.wav");
    write_pcm16(&s192, &tone(1.0, 192_000), 192_000, 1);
    for p in [s8, s192] {
        let ps = p.display().to_string();
        let mut extra = vec!["Voice test.", "--voice", ps.as_str()];
        extra.extend_from_slice(&FAST);
        let (out, wav) = say(&dir, &extra, None);
        assert!(
            out.status.success(),
            "{ps}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&wav).unwrap();
    }
}

#[test]
fn out_of_range_options_fail_naming_the_option() {
    let dir = scratch("cli-opts");
    let cases: [(&[&str], &str); 7] = [
        (&["--temperature", "-1"], "temperature"),
        (&["--temperature", "0"], "temperature"),
        (&["--top-p", "1.5"], "top_p"),
        (&["--min-p", "1"], "min_p"),
        (&["--flow-steps", "0"], "flow_steps"),
        (&["--max-new-tokens", "0"], "max_new_tokens"),
        (&["--repetition-penalty", "0"], "repetition_penalty"),
    ];
    for (opts, needle) in cases {
        let mut extra = vec!["Hi."];
        extra.extend_from_slice(opts);
        let (out, wav) = say(&dir, &extra, None);
        assert_fails(&out, needle, &wav);
    }
}

#[test]
fn missing_bundle_fails() {
    let dir = scratch("cli-nobundle");
    let out = dir.join("out.wav");
    let o = out.display().to_string();
    let missing = dir.join("no-such-bundle").display().to_string();
    let r = run(&["say", "Hi.", "--bundle", &missing, "-o", &o], None);
    assert_fails(&r, "no-such-bundle", &out);
}

#[test]
fn corrupt_bundles_fail() {
    let root = scratch("cli-corrupt");
    let out = root.join("out.wav");
    let o = out.display().to_string();

    // Wrong sha256 of a component graph (same size).
    let b1 = root.join("sha");
    copy_bundle(&bundle_dir(), &b1);
    edit_manifest(&b1, |m| {
        m["components"]["hift"]["files"][0]["sha256"] = serde_json::Value::String("0".repeat(64));
    });
    let r = run(
        &[
            "say",
            "Hi.",
            "--bundle",
            &b1.display().to_string(),
            "-o",
            &o,
            "--max-new-tokens",
            "2",
        ],
        None,
    );
    assert_fails(&r, "sha256", &out);

    // A truncated .onnx (manifest updated to match, so the graph itself is bad).
    let b2 = root.join("trunc");
    copy_bundle(&bundle_dir(), &b2);
    let graph = b2.join("flow_encoder.onnx");
    let bytes = std::fs::read(&graph).unwrap();
    std::fs::write(&graph, &bytes[..bytes.len() / 2]).unwrap();
    let sha = chatterbox_ort::bundle::sha256_file(&graph).unwrap();
    let len = (bytes.len() / 2) as u64;
    edit_manifest(&b2, |m| {
        m["components"]["flow_encoder"]["files"][0]["sha256"] = serde_json::Value::String(sha);
        m["components"]["flow_encoder"]["files"][0]["bytes"] = serde_json::Value::from(len);
    });
    let r = run(
        &[
            "say",
            "Hi.",
            "--bundle",
            &b2.display().to_string(),
            "-o",
            &o,
            "--max-new-tokens",
            "2",
        ],
        None,
    );
    assert_fails(&r, "flow_encoder", &out);

    // Input names that differ from the graph's.
    let b3 = root.join("names");
    copy_bundle(&bundle_dir(), &b3);
    edit_manifest(&b3, |m| {
        m["components"]["hift"]["inputs"][0]["name"] =
            serde_json::Value::String("mel_renamed".into());
    });
    let r = run(
        &[
            "say",
            "Hi.",
            "--bundle",
            &b3.display().to_string(),
            "-o",
            &o,
            "--max-new-tokens",
            "2",
        ],
        None,
    );
    assert_fails(&r, "mel", &out);
}

#[test]
fn voice_and_info_commands() {
    let dir = scratch("cli-voice");
    let reference = dir.join("ref.wav");
    write_pcm16(&reference, &tone(2.0, 22_050), 22_050, 1);
    let vfile = dir.join("v.safetensors");
    let b = bundle_arg();
    let r = run(
        &[
            "voice",
            &reference.display().to_string(),
            "-o",
            &vfile.display().to_string(),
            "--bundle",
            &b,
        ],
        None,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(vfile.exists());
    let vs = vfile.display().to_string();
    let mut extra = vec!["Saved voice.", "--voice-file", vs.as_str()];
    extra.extend_from_slice(&FAST);
    let (out, wav) = say(&dir, &extra, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wav.exists());

    let r = run(&["info", "--bundle", &b], None);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout);
    for needle in ["t3_decoder", "onnxruntime", "providers", "fp32"] {
        assert!(
            text.contains(needle),
            "`{needle}` missing from info:\n{text}"
        );
    }
}
