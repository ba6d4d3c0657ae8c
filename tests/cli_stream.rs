//! `chatterbox-ort say --stream` and `--format pcm` on the tiny bundle: the unknown-length
//! WAV on stdout, the complete WAV file, raw PCM, the `--stats` streaming figures, SIGINT
//! (no partial output file; what reached stdout stays), and bad streaming options.

mod pipeline_support;

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use pipeline_support::{bundle_dir, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");

/// The hidden test hook of `say --stream`: SIGINT to itself after this many chunks.
const INTERRUPT_ENV: &str = "CHATTERBOX_ORT_TEST_INTERRUPT_AFTER_CHUNKS";

const TEXT: &str = "Streaming speech arrives while the model is still talking.";

/// A fixed length (random weights never stop on their own): 40 tokens, 960 samples each.
const FIXED: [&str; 8] = [
    "--max-new-tokens",
    "40",
    "--min-new-tokens",
    "40",
    "--flow-steps",
    "2",
    "--seed",
    "7",
];
const SAMPLES: usize = 40 * 960;

/// Small token chunks: S3Gen passes at 12, 20, 28, 36 tokens and the last one (40), each
/// with new audio.
const SMALL_CHUNKS: [&str; 4] = ["--first-chunk-tokens", "12", "--chunk-tokens", "8"];

/// `N` of the summary line's `N pieces`.
fn pieces(stderr: &str) -> usize {
    let words: Vec<&str> = stderr.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("pieces"))
        .unwrap_or_else(|| panic!("no `pieces` in {stderr}"));
    words[at - 1].parse().unwrap()
}

/// `say` with the tiny bundle and `extra`; SIGINT at its default disposition whatever this
/// process inherited (a background job ignores it).
fn command(extra: &[&str], env: Option<(&str, &str)>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("say")
        .arg("--bundle")
        .arg(bundle_dir())
        .arg(TEXT)
        .args(extra)
        .env_remove("CHATTERBOX_ORT_BUNDLE")
        .env_remove(INTERRUPT_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// [`command`] with the fixed length, run to its end.
fn run(extra: &[&str], env: Option<(&str, &str)>) -> Output {
    let mut args = FIXED.to_vec();
    args.extend_from_slice(extra);
    command(&args, env)
        .spawn()
        .expect("spawn chatterbox-ort")
        .wait_with_output()
        .expect("wait")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Files in `dir` (temporary files included).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The only stderr line, which must start with `error:`.
fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr:?}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

/// Checks the 44-byte header of a 24 kHz 16-bit mono WAV; `data` is the size it must
/// give (`u32::MAX`: unknown length) and the RIFF size follows from it.
fn check_header(bytes: &[u8], data: u32) {
    assert!(bytes.len() >= 44, "{} bytes", bytes.len());
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
    assert_eq!(&bytes[0..4], b"RIFF");
    let riff = if data == u32::MAX {
        u32::MAX
    } else {
        data + 36
    };
    assert_eq!(u32_at(4), riff, "RIFF size");
    assert_eq!(&bytes[8..16], b"WAVEfmt ");
    assert_eq!(u32_at(16), 16, "fmt size");
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 1, "channels");
    assert_eq!(u32_at(24), 24_000, "sample rate");
    assert_eq!(u32_at(28), 48_000, "byte rate");
    assert_eq!(u16_at(32), 2, "block align");
    assert_eq!(u16_at(34), 16, "bits");
    assert_eq!(&bytes[36..40], b"data");
    assert_eq!(u32_at(40), data, "data size");
}

/// The non-streamed `say` of the same seed as a WAV file: (samples, the file's bytes).
fn reference(dir: &Path) -> (usize, Vec<u8>) {
    let wav = dir.join("plain.wav");
    ok(run(&["-o", &s(&wav)], None));
    let n = hound::WavReader::open(&wav).unwrap().len() as usize;
    (n, std::fs::read(&wav).unwrap())
}

#[test]
fn stream_to_stdout_is_an_unknown_length_wav_as_long_as_say() {
    let dir = scratch("cli-stream-stdout");
    let (n, plain) = reference(&dir);
    assert_eq!(n, SAMPLES);

    let mut extra = vec!["--stream", "-o", "-"];
    extra.extend(SMALL_CHUNKS);
    let out = ok(run(&extra, None));
    check_header(&out.stdout, u32::MAX);
    assert_eq!(out.stdout.len() - 44, 2 * n, "data bytes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("first audio after"), "{stderr}");
    assert_eq!(pieces(&stderr), 5, "{stderr}");

    // Raw PCM: the same samples without a header, streamed or not.
    extra.extend(["--format", "pcm"]);
    let pcm = ok(run(&extra, None));
    assert_eq!(
        pcm.stdout,
        out.stdout[44..],
        "streamed PCM = streamed WAV data"
    );
    let plain_pcm = ok(run(&["--format", "pcm", "-o", "-"], None));
    assert_eq!(plain_pcm.stdout, plain[44..], "PCM = WAV data");
    let pcm_file = dir.join("plain.pcm");
    ok(run(&["--format", "pcm", "-o", &s(&pcm_file)], None));
    assert_eq!(std::fs::read(&pcm_file).unwrap(), plain[44..]);
}

#[test]
fn stream_to_a_file_is_a_complete_wav_with_streaming_stats() {
    let dir = scratch("cli-stream-file");
    let (n, plain) = reference(&dir);
    let wav = dir.join("streamed.wav");
    let mut extra = vec!["--stream", "--stats", "-o"];
    let ws = s(&wav);
    extra.push(&ws);
    extra.extend(SMALL_CHUNKS);
    let out = ok(run(&extra, None));
    let bytes = std::fs::read(&wav).unwrap();
    // The header got its real sizes at the end: the non-streamed file's header.
    check_header(&bytes, (2 * n) as u32);
    assert_eq!(bytes[..44], plain[..44]);
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!((r.spec().sample_rate, r.spec().channels), (24_000, 1));
    assert_eq!(r.len() as usize, n);
    assert_eq!(
        names(&dir),
        ["plain.wav", "streamed.wav"],
        "no temporary file left"
    );

    // The streamed figures in --stats (stdout: the audio went to a file).
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    let st = &stats["stages"];
    let chunks = st["audio_chunks"].as_u64().unwrap();
    assert_eq!(chunks, 5, "{st}");
    assert_eq!(pieces(&String::from_utf8_lossy(&out.stderr)), 5);
    assert_eq!(st["s3gen_passes"].as_u64(), Some(chunks), "{st}");
    let lat = st["chunk_latency_s"].as_array().unwrap();
    assert_eq!(lat.len() as u64, chunks);
    assert!(lat.iter().all(|x| x.as_f64().unwrap() >= 0.0));
    let first = st["first_audio_s"].as_f64().unwrap();
    assert!(
        first > 0.0 && first < st["total_s"].as_f64().unwrap(),
        "{st}"
    );
    assert!(stats["first_audio_wall_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["stream"]["first_chunk_tokens"].as_u64(), Some(12));
    assert_eq!(stats["stream"]["chunk_tokens"].as_u64(), Some(8));
    assert_eq!(stats["stream"]["overlap"].as_bool(), Some(false));

    // Overlap gives the same audio; stdout gets the same samples as the file.
    let mut extra = vec!["--stream", "--overlap", "-o", "-"];
    extra.extend(SMALL_CHUNKS);
    let piped = ok(run(&extra, None));
    assert_eq!(piped.stdout[44..], bytes[44..]);

    // Non-streamed --stats: one delivery, first audio with it.
    let plain_stats = ok(run(&["--stats", "-o", &s(&dir.join("plain.wav"))], None));
    let stats: serde_json::Value = serde_json::from_slice(&plain_stats.stdout).unwrap();
    let st = &stats["stages"];
    assert_eq!(st["audio_chunks"].as_u64(), Some(1), "{st}");
    assert_eq!(st["chunk_latency_s"].as_array().unwrap().len(), 1);
    assert!(st["first_audio_s"].as_f64().unwrap() > 0.0);
    assert!(stats["stream"].is_null());
}

#[test]
fn sigint_after_a_chunk_leaves_no_partial_file() {
    let dir = scratch("cli-stream-cancel");
    let old = dir.join("old.wav");
    std::fs::write(&old, b"the previous file").unwrap();
    let new = dir.join("new.wav");
    for (target, first) in [(&new, "1"), (&old, "1"), (&new, "3")] {
        let mut extra = vec!["--stream", "-o"];
        let ts = s(target);
        extra.push(&ts);
        extra.extend(SMALL_CHUNKS);
        let out = run(&extra, Some((INTERRUPT_ENV, first)));
        assert_eq!(out.status.code(), Some(130), "{out:?}");
        let line = one_error_line(&out);
        assert!(line.contains("SIGINT"), "{line}");
        assert!(line.contains("was not written"), "{line}");
        assert!(!new.exists(), "partial output file");
        assert_eq!(std::fs::read(&old).unwrap(), b"the previous file");
        assert_eq!(names(&dir), ["old.wav"], "no temporary file left");
    }
    // Without --stream: stopped after the (only) text chunk's audio, nothing written.
    let out = run(&["-o", &s(&new)], Some((INTERRUPT_ENV, "1")));
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(one_error_line(&out).contains("was not written"));
    assert_eq!(names(&dir), ["old.wav"]);
    // And the handler changes nothing in a run that is not interrupted.
    ok(run(&["-o", &s(&new)], None));
    assert!(new.exists());
}

#[test]
fn sigint_while_streaming_to_stdout_keeps_what_was_written() {
    // Long enough that it cannot finish between the first bytes and the signal.
    let mut cmd = command(
        &[
            "--stream",
            "-o",
            "-",
            "--max-new-tokens",
            "1000",
            "--min-new-tokens",
            "1000",
            "--flow-steps",
            "1",
            "--first-chunk-tokens",
            "9",
        ],
        None,
    );
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    // The header and the first chunk's samples.
    let mut got = vec![0u8; 44 + 2];
    stdout.read_exact(&mut got).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    stdout.read_to_end(&mut got).unwrap();
    let status = child.wait().unwrap();
    let stderr = err.join().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?} {:?}", status.signal());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: interrupted by SIGINT"),
        "{stderr}"
    );
    assert!(lines[0].contains("written to stdout"), "{stderr}");
    check_header(&got, u32::MAX);
    let data = got.len() - 44;
    assert!(
        data.is_multiple_of(2) && data < 2 * 1000 * 960,
        "{data} bytes"
    );
}

/// Bad streaming options: one error line naming the option, non-zero exit, no file.
#[test]
fn bad_stream_options_fail_naming_the_option() {
    let dir = scratch("cli-stream-opts");
    let out = dir.join("out.wav");
    let o = s(&out);
    let cases: [(&[&str], &str); 8] = [
        (
            &["--stream", "--first-chunk-tokens", "2"],
            "first_chunk_tokens",
        ),
        (
            &["--stream", "--first-chunk-tokens", "5000"],
            "first_chunk_tokens",
        ),
        (
            &["--stream", "--first-chunk-tokens", "-4"],
            "--first-chunk-tokens",
        ),
        (&["--stream", "--chunk-tokens", "0"], "chunk_tokens"),
        (&["--chunk-tokens", "8"], "--chunk-tokens"),
        (&["--first-chunk-tokens", "8"], "--first-chunk-tokens"),
        (&["--overlap"], "--overlap"),
        (&["--stream", "--format", "mp3"], "--format"),
    ];
    for (opts, needle) in cases {
        let mut extra = opts.to_vec();
        extra.extend(["-o", &o]);
        let r = run(&extra, None);
        assert!(!r.status.success(), "{opts:?}");
        let line = one_error_line(&r);
        assert!(line.contains(needle), "{opts:?}: `{needle}` not in {line}");
        assert!(!out.exists(), "{opts:?}: output file left");
    }
    assert!(names(&dir).is_empty());
}
