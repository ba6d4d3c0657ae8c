//! `chatterbox-ort serve` on the tiny bundle: the real server on loopback, spoken to with a
//! real HTTP client (ureq) and, where the test needs to see chunks arrive or to hang up
//! mid-response, a raw socket.
#![cfg(feature = "serve")]

#[path = "support/audio_decode.rs"]
mod audio_decode;
mod pipeline_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audio_decode::decode;
use pipeline_support::{bundle_dir, scratch, tone, write_pcm16};

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");

/// A running server; killed (SIGKILL) when dropped unless it was stopped.
struct Server {
    child: Child,
    addr: String,
    voices: PathBuf,
}

impl Server {
    fn start(name: &str, extra: &[&str]) -> Server {
        let voices = scratch(&format!("serve-{name}")).join("voices");
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--bundle",
            ])
            .arg(bundle_dir())
            .arg("--voices")
            .arg(&voices)
            .args(extra)
            .env_remove("CHATTERBOX_ORT_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chatterbox-ort serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("no listening line: {line:?}; stderr: {err}")
            })
            .to_string();
        Server {
            child,
            addr,
            voices,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM; the exit status and stderr.
    fn stop(mut self, wait: Duration) -> (Option<i32>, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (status.code(), err);
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within {wait:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an OpenAI-style error with `status` naming `param`.
    fn assert_error(&self, status: u16, param: Option<&str>) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/json");
        let v = self.json();
        let e = &v["error"];
        assert!(e["type"].is_string(), "{v}");
        assert_eq!(e["param"].as_str(), param, "{v}");
        let msg = e["message"].as_str().expect("message").to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        msg
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("HTTP request");
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .expect("read body");
    Reply {
        status,
        content_type,
        body,
    }
}

fn get(s: &Server, path: &str) -> Reply {
    reply(agent().get(&s.url(path)).call())
}

fn post_json(s: &Server, path: &str, body: &serde_json::Value) -> Reply {
    reply(
        agent()
            .post(&s.url(path))
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes()),
    )
}

/// A speech request with fixed length (random weights never stop): `tokens` speech tokens,
/// one flow step.
fn speech(tokens: u64, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "model": "tts-1",
        "input": "Hello there. This is a test.",
        "voice": "alloy",
        "seed": 7,
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "flow_steps": 1,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn metric(s: &Server, line_start: &str) -> Option<f64> {
    let text = String::from_utf8(get(s, "/metrics").body).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    t.elapsed()
}

/// A raw HTTP/1.1 POST whose response body is read chunk by chunk (chunked encoding).
struct RawResponse {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
}

fn raw_post(s: &Server, path: &str, body: &serde_json::Value) -> RawResponse {
    let body = body.to_string();
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.addr,
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    RawResponse {
        reader,
        status,
        headers,
    }
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next chunk of a chunked body (`None` at the terminating chunk).
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        if size == 0 {
            return None;
        }
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).unwrap();
        data.truncate(size);
        Some(data)
    }
}

#[test]
fn health_models_and_metrics() {
    let s = Server::start("health", &[]);
    let h = get(&s, "/health");
    assert_eq!(h.status, 200);
    let v = h.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["model"], "chatterbox");
    let m = get(&s, "/v1/models").json();
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chatterbox", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]);
    assert_eq!(
        post_json(
            &s,
            "/v1/audio/speech",
            &speech(6, serde_json::json!({"response_format": "wav"}))
        )
        .status,
        200
    );
    let text = String::from_utf8(get(&s, "/metrics").body).unwrap();
    for name in [
        "chatterbox_requests_total{route=\"/v1/audio/speech\",status=\"200\"} 1",
        "# TYPE chatterbox_request_duration_seconds histogram",
        "chatterbox_request_duration_seconds_count 1",
        "chatterbox_time_to_first_audio_seconds_count 1",
        "chatterbox_rtf_count 1",
        "chatterbox_queue_depth 0",
        "chatterbox_syntheses_running 0",
        "# TYPE chatterbox_sessions_created counter",
        "# TYPE chatterbox_resident_memory_bytes gauge",
        "# EOF",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(metric(&s, "chatterbox_sessions_created_total").unwrap() >= 5.0);
    assert!(metric(&s, "chatterbox_audio_seconds_total").unwrap() > 0.0);
    assert!(metric(&s, "chatterbox_resident_memory_bytes").unwrap() > 10e6);
    get(&s, "/nope").assert_error(404, None);
    let (code, _) = s.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0));
}

/// Every response format decodes to the audio of `say` with the same settings: exactly for
/// wav/pcm/flac, within the codec's delay and padding for mp3/opus.
#[test]
fn every_format_decodes_to_the_cli_audio() {
    let s = Server::start("formats", &[]);
    let dir = scratch("serve-formats-cli");
    let wav = dir.join("say.wav");
    let out = Command::new(BIN)
        .args([
            "say",
            "Hello there. This is a test.",
            "--threads",
            "1",
            "--bundle",
        ])
        .arg(bundle_dir())
        .args([
            "--seed",
            "7",
            "--max-new-tokens",
            "12",
            "--min-new-tokens",
            "12",
            "--flow-steps",
            "1",
            "-o",
        ])
        .arg(&wav)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<i16> = hound::WavReader::open(&wav)
        .unwrap()
        .samples::<i16>()
        .map(|x| x.unwrap())
        .collect();
    assert!(want.len() > 2400);
    for (format, ctype) in [
        ("wav", "audio/wav"),
        ("pcm", "audio/pcm"),
        ("flac", "audio/flac"),
        ("mp3", "audio/mpeg"),
        ("opus", "audio/ogg"),
    ] {
        let r = post_json(
            &s,
            "/v1/audio/speech",
            &speech(12, serde_json::json!({"response_format": format})),
        );
        assert_eq!(
            r.status,
            200,
            "{format}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.content_type.starts_with(ctype),
            "{format}: {}",
            r.content_type
        );
        let got = decode(format, &r.body);
        assert_eq!(got.sample_rate, 24_000, "{format}");
        match format {
            "wav" | "pcm" | "flac" => assert_eq!(got.samples_i16(), want, "{format}"),
            _ => {
                // Lossy: the length within one codec frame plus the encoder delay, and the
                // waveform close (SNR after aligning the delay).
                let diff = got.samples.len().abs_diff(want.len());
                assert!(
                    diff <= 2400,
                    "{format}: {} samples vs {}",
                    got.samples.len(),
                    want.len()
                );
                // Random weights give noise-like audio, which perceptual codecs do not keep
                // sample for sample: measured SNR mp3 ~7 dB, opus ~2.5 dB (unrelated audio
                // gives <= 0 dB). The loudness must match within 25 %.
                let snr = got.snr_against(&want);
                assert!(snr > 1.0, "{format}: SNR {snr:.1} dB");
                let rms = |x: &[f32]| {
                    (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
                };
                let want_f: Vec<f32> = want.iter().map(|&x| f32::from(x) / 32768.0).collect();
                let ratio = rms(&got.samples) / rms(&want_f);
                assert!(
                    (0.75..=1.25).contains(&ratio),
                    "{format}: RMS ratio {ratio:.2}"
                );
            }
        }
    }
}

/// `stream_format: "audio"` delivers audio bytes in more than one chunk before the end, and
/// the stream is a valid file of the full length.
#[test]
fn streaming_delivers_audio_before_the_end() {
    let s = Server::start("stream", &[]);
    for format in ["wav", "mp3", "opus", "pcm", "flac"] {
        let body = speech(
            60,
            serde_json::json!({"response_format": format, "stream_format": "audio", "first_chunk_tokens": 10, "chunk_tokens": 12}),
        );
        let mut r = raw_post(&s, "/v1/audio/speech", &body);
        assert_eq!(r.status, 200, "{format}");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{format}");
        let mut chunks = Vec::new();
        while let Some(c) = r.chunk() {
            chunks.push(c);
        }
        assert!(chunks.len() > 2, "{format}: {} chunks", chunks.len());
        let all: Vec<u8> = chunks.concat();
        let got = decode(format, &all);
        // 60 tokens = 2.4 s at 25 tokens/s (the flow's 2 mel frames per token, 480 samples each).
        let secs = got.samples.len() as f64 / 24_000.0;
        assert!((2.2..=2.7).contains(&secs), "{format}: {secs} s");
    }
    // Server-sent events: deltas of base64 audio, then `speech.audio.done`.
    let body = speech(
        30,
        serde_json::json!({"response_format": "pcm", "stream_format": "sse", "first_chunk_tokens": 10, "chunk_tokens": 8}),
    );
    let r = post_json(&s, "/v1/audio/speech", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/event-stream");
    let text = String::from_utf8(r.body).unwrap();
    let events: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(events.len() > 2, "{events:?}");
    let (done, deltas) = events.split_last().unwrap();
    assert_eq!(done["type"], "speech.audio.done");
    assert_eq!(done["usage"]["output_tokens"], 30);
    let mut pcm = Vec::new();
    for d in deltas {
        assert_eq!(d["type"], "speech.audio.delta");
        use base64::Engine as _;
        pcm.extend(
            base64::engine::general_purpose::STANDARD
                .decode(d["audio"].as_str().unwrap())
                .unwrap(),
        );
    }
    assert_eq!(pcm.len() % 2, 0);
    assert!(pcm.len() / 2 >= 24_000, "{} samples", pcm.len() / 2);
}

#[test]
fn bad_requests_get_openai_errors() {
    let s = Server::start("bad", &["--max-input-chars", "50"]);
    let base = speech(3, serde_json::json!({}));
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(serde_json::Value, u16, Option<&str>, &str)> = vec![
        (with("speed", 1.5.into()), 400, Some("speed"), "speed"),
        (
            with("instructions", "whisper".into()),
            400,
            Some("instructions"),
            "instructions",
        ),
        (
            with("response_format", "aac".into()),
            400,
            Some("response_format"),
            "aac",
        ),
        (
            with("stream_format", "video".into()),
            400,
            Some("stream_format"),
            "stream_format",
        ),
        (
            with("model", "whisper-1".into()),
            404,
            Some("model"),
            "whisper-1",
        ),
        (
            with("voice", "../../etc/passwd".into()),
            400,
            Some("voice"),
            "invalid voice name",
        ),
        (with("voice", "nobody".into()), 404, Some("voice"), "nobody"),
        (
            with("input", "x".repeat(51).into()),
            400,
            Some("input"),
            "at most 50",
        ),
        (with("input", "   ".into()), 400, Some("input"), "empty"),
        (
            with("temperature", (-1.0).into()),
            400,
            Some("temperature"),
            "temperature",
        ),
        (
            with("flow_steps", 100000.into()),
            400,
            Some("flow_steps"),
            "flow_steps",
        ),
        (with("seed", "x".into()), 400, Some("seed"), "integer"),
        (
            with("language", "fr".into()),
            400,
            Some("language"),
            "language",
        ),
        (
            with("bogus", 1.into()),
            400,
            Some("bogus"),
            "unrecognized request argument",
        ),
        (without("input"), 400, Some("input"), "missing"),
        (without("model"), 400, Some("model"), "missing"),
    ];
    for (body, status, param, needle) in cases {
        let r = post_json(&s, "/v1/audio/speech", &body);
        let msg = r.assert_error(status, param);
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }
    let r = reply(
        agent()
            .post(&s.url("/v1/audio/speech"))
            .send(&b"{not json"[..]),
    );
    assert!(r.assert_error(400, None).contains("JSON"));
    let r = reply(agent().post(&s.url("/v1/audio/speech")).send(&b"[1]"[..]));
    assert!(r.assert_error(400, None).contains("object"));
    // A body far over the limit (4 bytes a character + 64 KiB) is refused once the limit is
    // passed, without reading the rest.
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    .unwrap();
    stream.write_all(&vec![b' '; 70_000]).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    // Still serving.
    assert_eq!(
        post_json(
            &s,
            "/v1/audio/speech",
            &speech(3, serde_json::json!({"response_format": "wav"}))
        )
        .status,
        200
    );
}

fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "cbx-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, data) in fields {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if *name == "file" {
            write!(body, "; filename=\"voice.wav\"\r\nContent-Type: audio/wav").unwrap();
        }
        write!(body, "\r\n\r\n").unwrap();
        body.extend_from_slice(data);
        write!(body, "\r\n").unwrap();
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn upload(s: &Server, fields: &[(&str, &[u8])], query: &str) -> Reply {
    let (ctype, body) = multipart(fields);
    reply(
        agent()
            .post(&s.url(&format!("/v1/audio/voices{query}")))
            .header("content-type", &ctype)
            .send(&body[..]),
    )
}

fn voice_wav(dir: &Path, seconds: f64) -> Vec<u8> {
    let path = dir.join("clip.wav");
    write_pcm16(&path, &tone(seconds, 16_000), 16_000, 1);
    std::fs::read(path).unwrap()
}

fn voice_names(s: &Server) -> Vec<(String, String)> {
    get(s, "/v1/audio/voices").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn voice_library_upload_use_delete() {
    let s = Server::start(
        "voices",
        &["--voice-cache", "1", "--max-upload-bytes", "400000"],
    );
    let wav = voice_wav(&scratch("serve-voice-clip"), 3.0);
    let r = upload(&s, &[("name", b"bob"), ("file", &wav)], "");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["name"], "bob");
    assert!(s.voices.join("bob.safetensors").is_file());
    assert!(voice_names(&s).contains(&("bob".into(), "library".into())));
    assert!(voice_names(&s).contains(&("default".into(), "bundle".into())));
    // The same name again: 409 unless overwrite.
    let r = upload(&s, &[("name", b"bob"), ("file", &wav)], "");
    assert!(r.assert_error(409, Some("name")).contains("exists"));
    assert_eq!(
        upload(
            &s,
            &[("name", b"bob"), ("file", &wav), ("overwrite", b"true")],
            ""
        )
        .status,
        201
    );
    // A raw WAV body with ?name=.
    let r = reply(
        agent()
            .post(&s.url("/v1/audio/voices?name=carol"))
            .header("content-type", "audio/wav")
            .send(&wav[..]),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Speech with each voice; the cache holds one loaded voice at most.
    let mut outputs = Vec::new();
    for v in ["bob", "carol", "bob", "default"] {
        let r = post_json(
            &s,
            "/v1/audio/speech",
            &speech(4, serde_json::json!({"voice": v, "response_format": "pcm"})),
        );
        assert_eq!(r.status, 200, "{v}");
        outputs.push(r.body);
        assert!(get(&s, "/health").json()["voices_cached"].as_u64().unwrap() <= 1);
    }
    assert_eq!(
        outputs[0], outputs[2],
        "the same voice gives the same audio"
    );
    assert_ne!(
        outputs[0], outputs[3],
        "an uploaded voice differs from the default"
    );
    // Names that are paths, bad files, oversized uploads.
    for bad in ["../evil", "a/b", ".hidden", "x y", ""] {
        let r = upload(&s, &[("name", bad.as_bytes()), ("file", &wav)], "");
        r.assert_error(400, Some("name"));
    }
    assert!(!s.voices.parent().unwrap().join("evil.safetensors").exists());
    upload(&s, &[("name", b"junk"), ("file", b"RIFF....not a wav")], "")
        .assert_error(400, Some("file"));
    let short = voice_wav(&scratch("serve-voice-short"), 0.2);
    upload(&s, &[("name", b"short"), ("file", &short)], "").assert_error(400, Some("file"));
    let big = voice_wav(&scratch("serve-voice-big"), 20.0);
    upload(&s, &[("name", b"big"), ("file", &big)], "").assert_error(413, None);
    upload(&s, &[("file", &wav)], "").assert_error(400, Some("name"));
    upload(&s, &[("name", b"nofile")], "").assert_error(400, Some("file"));
    assert!(
        !s.voices.join("junk.safetensors").exists() && !s.voices.join("big.safetensors").exists()
    );
    // Delete.
    let r = reply(agent().delete(&s.url("/v1/audio/voices/bob")).call());
    assert_eq!(r.status, 200);
    assert!(!s.voices.join("bob.safetensors").exists());
    reply(agent().delete(&s.url("/v1/audio/voices/bob")).call()).assert_error(404, Some("voice"));
    let msg = reply(agent().delete(&s.url("/v1/audio/voices/default")).call())
        .assert_error(404, Some("voice"));
    assert!(msg.contains("cannot be deleted"), "{msg}");
    reply(
        agent()
            .delete(&s.url("/v1/audio/voices/..%2F..%2Fetc"))
            .call(),
    )
    .assert_error(400, Some("voice"));
    post_json(
        &s,
        "/v1/audio/speech",
        &speech(3, serde_json::json!({"voice": "bob"})),
    )
    .assert_error(404, Some("voice"));
}

#[test]
fn api_key_guards_every_route_but_health() {
    let s = Server::start("auth", &["--api-key", "sekrit-key-123"]);
    assert_eq!(get(&s, "/health").status, 200);
    for path in ["/v1/models", "/metrics", "/v1/audio/voices"] {
        assert!(
            get(&s, path).assert_error(401, None).contains("API key"),
            "{path}"
        );
    }
    let body = speech(3, serde_json::json!({"response_format": "wav"}));
    let send = |key: Option<&str>| {
        let mut req = agent().post(&s.url("/v1/audio/speech"));
        if let Some(k) = key {
            req = req.header("authorization", &format!("Bearer {k}"));
        }
        reply(req.send(body.to_string().as_bytes()))
    };
    send(None).assert_error(401, None);
    send(Some("wrong-key-123")).assert_error(401, None);
    assert_eq!(send(Some("sekrit-key-123")).status, 200);
    // Anything but loopback needs a key.
    let out = Command::new(BIN)
        .args(["serve", "--bind", "0.0.0.0:0", "--bundle"])
        .arg(bundle_dir())
        .env_remove("CHATTERBOX_ORT_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("bind") && err.contains("API key"), "{err}");
}

/// With one synthesis at a time and one waiting, a third request gets 429 at once; a client
/// that hangs up (mid-stream, or before any byte of a whole-file response) cancels its
/// synthesis long before it would have ended.
#[test]
fn full_queue_429_and_disconnect_cancels() {
    let s = Server::start("queue", &["--concurrency", "1", "--max-queue", "1"]);
    // About 1000 tokens: tens of seconds on the tiny bundle.
    let long = speech(
        1000,
        serde_json::json!({"response_format": "pcm", "stream_format": "audio", "first_chunk_tokens": 10, "chunk_tokens": 8}),
    );
    let mut first = raw_post(&s, "/v1/audio/speech", &long);
    assert_eq!(first.status, 200);
    assert!(first.chunk().is_some());
    let long_whole = speech(1000, serde_json::json!({"response_format": "wav"}));
    let queued = {
        let body = long_whole.to_string();
        let addr = s.addr.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&addr).unwrap();
            write!(
                stream,
                "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            stream
        })
    };
    wait_until("one request queued", Duration::from_secs(10), || {
        get(&s, "/health").json()["queue_depth"] == 1
    });
    let t = Instant::now();
    let r = post_json(&s, "/v1/audio/speech", &speech(3, serde_json::json!({})));
    assert!(r.assert_error(429, None).contains("queue is full"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "429 took {:?}",
        t.elapsed()
    );
    assert_eq!(metric(&s, "chatterbox_queue_depth"), Some(1.0));

    // Hang up the streaming one: its synthesis stops, the queued one starts.
    drop(first);
    let waited = wait_until(
        "the queued request started",
        Duration::from_secs(10),
        || get(&s, "/health").json()["queue_depth"] == 0,
    );
    assert!(waited < Duration::from_secs(8));
    assert_eq!(
        metric(
            &s,
            "chatterbox_requests_total{route=\"/v1/audio/speech\",status=\"499\"}"
        ),
        Some(1.0)
    );
    // Hang up the whole-file one (no byte sent yet): cancelled too.
    let stream = queued.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    wait_until(
        "the whole-file synthesis cancelled",
        Duration::from_secs(10),
        || get(&s, "/health").json()["running"] == 0,
    );
    assert_eq!(
        metric(
            &s,
            "chatterbox_requests_total{route=\"/v1/audio/speech\",status=\"499\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &s,
            "chatterbox_requests_total{route=\"/v1/audio/speech\",status=\"200\"}"
        ),
        None
    );
}

#[test]
fn timeout_unload_and_graceful_shutdown() {
    let s = Server::start(
        "lifecycle",
        &[
            "--request-timeout",
            "1",
            "--shutdown-grace",
            "1",
            "--residency",
            "idle=300",
        ],
    );
    let t = Instant::now();
    let r = post_json(
        &s,
        "/v1/audio/speech",
        &speech(1000, serde_json::json!({"response_format": "wav"})),
    );
    assert!(r.assert_error(504, None).contains("timeout"));
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // Unload: every session goes (idle policy), the next request loads them again.
    let u = reply(agent().post(&s.url("/admin/unload")).send(&b""[..])).json();
    // How many sessions the timed-out request had created depends on the machine's speed
    // (and on whether the session cache was already written): at least the first one.
    assert!(u["sessions_destroyed"].as_u64().unwrap() >= 1, "{u}");
    assert_eq!(u["loaded"].as_array().unwrap().len(), 0, "{u}");
    let created = metric(&s, "chatterbox_sessions_created_total").unwrap();
    assert_eq!(
        post_json(&s, "/v1/audio/speech", &speech(3, serde_json::json!({}))).status,
        200
    );
    assert!(metric(&s, "chatterbox_sessions_created_total").unwrap() > created);
    // SIGTERM with a long synthesis in flight: it is cancelled after the grace, the process
    // exits 0.
    let mut inflight = raw_post(
        &s,
        "/v1/audio/speech",
        &speech(
            1000,
            serde_json::json!({"response_format": "pcm", "stream_format": "audio", "first_chunk_tokens": 10}),
        ),
    );
    assert!(inflight.chunk().is_some());
    let addr = s.addr.clone();
    let t = Instant::now();
    let (code, err) = s.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("shutting down"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // The in-flight response ended without the terminating chunk (aborted), and the port
    // is closed.
    let mut rest = Vec::new();
    let _ = inflight.reader.read_to_end(&mut rest);
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "the cancelled stream must not end cleanly"
    );
    assert!(TcpStream::connect(addr).is_err());
}
