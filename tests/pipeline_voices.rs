//! Voices built from WAV files equal the reference's (`ChatterboxTTS.prepare_conditionals`)
//! on the tiny bundle: the resamplers against the reference's signals, and whole voices
//! against `goldens/voices` (export/voice_goldens.py: 8, 44.1, 48 kHz mono in float32,
//! 16- and 24-bit PCM, and a 24 kHz stereo file; `goldens/ref.wav`, 22.05 kHz, is checked
//! in `pipeline_e2e.rs`).
//!
//! Bounds: speech tokens exactly equal; x-vector, VoiceEncoder embedding and prompt mel
//! within 1e-4 relative L2; resampled signals within 2e-6 absolute (libsoxr's scalar engine
//! here, its SIMD engine in the reference: rounding differences only).

mod pipeline_support;

use std::path::PathBuf;

use chatterbox_ort::audio::{self, resample};
use pipeline_support::{bundle_dir, engine, goldens, rel_err};
use safetensors::tensor::{Dtype, SafeTensors};

const EMBED_TOL: f64 = 1e-4;
const SIGNAL_ABS_TOL: f32 = 2e-6;

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn check_signal(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let m = max_abs(got, want);
    let r = rel_err(got, want);
    eprintln!(
        "{what}: {} samples, max abs diff {m:.3e}, rel L2 {r:.3e}",
        got.len()
    );
    assert!(m <= SIGNAL_ABS_TOL, "{what}: max abs diff {m}");
}

#[test]
fn soxr_reproduces_librosa_load_and_resample() {
    let g = goldens();
    let wav = audio::read_wav(&bundle_dir().join("goldens/ref.wav"), 0.0).unwrap();
    assert_eq!(wav.sample_rate, 22_050);
    let at24 = audio::resample(&wav.samples, wav.sample_rate, 24_000).unwrap();
    check_signal("librosa.load(sr=24000)", &at24, g.f32("ref_24k"));
    // From the golden 24 kHz signal, so this step is checked on its own.
    let at16 = audio::resample(g.f32("ref_24k"), 24_000, 16_000).unwrap();
    check_signal("librosa.resample(24000 -> 16000)", &at16, g.f32("ref_16k"));
    // Perth's input: 24 -> 32 kHz.
    let at32 = audio::resample(g.f32("wm_input_24k"), 24_000, 32_000).unwrap();
    check_signal(
        "librosa.resample(24000 -> 32000)",
        &at32,
        g.f32("wm_input_32k"),
    );
}

#[test]
fn sinc_reproduces_torchaudio_resample() {
    let g = goldens();
    let crop = &g.f32("ref_24k")[..240_000];
    let got = resample::resample_sinc(crop, 24_000, 16_000).unwrap();
    check_signal(
        "torchaudio Resample(24000, 16000)",
        &got,
        g.f32("s3gen_ref_16k"),
    );
}

/// `goldens/voices/voices.safetensors`: f32 tensors widened, i64 kept.
struct VoiceGoldens {
    dir: PathBuf,
    f32s: std::collections::HashMap<String, Vec<f32>>,
    i64s: std::collections::HashMap<String, Vec<i64>>,
    meta: serde_json::Value,
}

fn voice_goldens() -> VoiceGoldens {
    let dir = bundle_dir().join("goldens/voices");
    let bytes = std::fs::read(dir.join("voices.safetensors")).expect("voices.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parse voices.safetensors");
    let mut f32s = std::collections::HashMap::new();
    let mut i64s = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        match view.dtype() {
            Dtype::F32 => {
                f32s.insert(
                    name.to_string(),
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                );
            }
            Dtype::I64 => {
                i64s.insert(
                    name.to_string(),
                    d.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                );
            }
            other => panic!("{name}: unexpected dtype {other:?}"),
        }
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("voices.json")).unwrap()).unwrap();
    VoiceGoldens {
        dir,
        f32s,
        i64s,
        meta,
    }
}

#[test]
fn voices_at_other_rates_and_channel_counts_match_reference() {
    let e = engine();
    let vg = voice_goldens();
    let clips = vg.meta["clips"].as_object().expect("voices.json `clips`");
    assert!(clips.len() >= 4);
    let mut rates = std::collections::BTreeSet::new();
    let mut stereo = false;
    for (name, info) in clips {
        let file = info["file"].as_str().unwrap();
        let path = vg.dir.join(file.trim_start_matches("voices/"));
        let wav = audio::read_wav(&path, 0.0).unwrap();
        assert_eq!(
            u64::from(wav.sample_rate),
            info["sample_rate"].as_u64().unwrap()
        );
        assert_eq!(u64::from(wav.channels), info["channels"].as_u64().unwrap());
        rates.insert(wav.sample_rate);
        stereo |= wav.channels == 2;

        let voice = e.voice_from_wav(&path).unwrap();
        let t3: Vec<i64> = voice.cond_prompt_speech_tokens.iter().copied().collect();
        let want_t3 = &vg.i64s[&format!("{name}.t3_prompt_tokens")];
        let s3: Vec<i64> = voice.prompt_token.iter().copied().collect();
        let want_s3 = &vg.i64s[&format!("{name}.s3gen_prompt_tokens")];
        let same = |a: &[i64], b: &[i64]| a.iter().zip(b).filter(|(x, y)| x == y).count();
        let x = rel_err(
            voice.embedding.as_slice().unwrap(),
            &vg.f32s[&format!("{name}.xvector")],
        );
        let ve = rel_err(
            voice.speaker_emb.as_slice().unwrap(),
            &vg.f32s[&format!("{name}.ve_embedding")],
        );
        let feat = voice.prompt_feat.as_slice().unwrap();
        let want_mel = &vg.f32s[&format!("{name}.prompt_mel")];
        assert_eq!(feat.len(), want_mel.len(), "{name}: prompt mel frames");
        let mel = rel_err(feat, want_mel);
        eprintln!(
            "{name}: T3 prompt tokens {}/{}, S3Gen prompt tokens {}/{}, x-vector rel {x:.2e}, \
             VE rel {ve:.2e}, prompt mel rel {mel:.2e}",
            same(&t3, want_t3),
            want_t3.len(),
            same(&s3, want_s3),
            want_s3.len()
        );
        assert_eq!(&t3, want_t3, "{name}: T3 prompt tokens");
        assert_eq!(&s3, want_s3, "{name}: S3Gen prompt tokens");
        assert!(x < EMBED_TOL, "{name}: x-vector rel err {x}");
        assert!(ve < EMBED_TOL, "{name}: VoiceEncoder rel err {ve}");
        assert!(mel < EMBED_TOL, "{name}: prompt mel rel err {mel}");
    }
    for r in [8_000, 44_100, 48_000] {
        assert!(rates.contains(&r), "no golden clip at {r} Hz");
    }
    assert!(stereo, "no stereo golden clip");
}
