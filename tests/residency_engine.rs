//! Residency policies on a whole engine (tiny bundle): swap really destroys
//! sessions after their stage, a policy change on a loaded engine takes
//! effect, an impossible budget is refused, and every policy gives
//! bit-identical audio for the same seed.

mod pipeline_support;

use std::path::{Path, PathBuf};

use chatterbox_ort::residency::{Policy, ResidencyOptions, Stats};
use chatterbox_ort::{Engine, EngineOptions, ErrorKind, Request};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/tiny")
}

fn engine(residency: &str) -> Engine {
    engine_with_cache(residency, None)
}

fn engine_with_cache(residency: &str, session_cache: Option<PathBuf>) -> Engine {
    let mut opts = EngineOptions::new(tiny());
    opts.threads = Some(1);
    opts.residency = residency.parse().expect("preset parses");
    opts.session_cache = session_cache;
    Engine::load(opts).unwrap_or_else(|e| panic!("engine with residency {residency}: {e}"))
}

/// A fresh folder under the target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "cbx-residency-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(engine: &Engine) -> Request {
    let mut req = engine.default_request();
    req.seed = 7;
    req.max_new_tokens = 6;
    req.min_new_tokens = 6;
    req.flow_steps = 2;
    req
}

fn speak(engine: &Engine) -> Vec<f32> {
    let audio = engine
        .synthesize(
            "Residency must not change a sample.",
            engine.default_voice(),
            &request(engine),
        )
        .expect("synthesis");
    assert_eq!(audio.samples.len(), 6 * 960, "six tokens, 960 samples each");
    audio.samples
}

fn component<'a>(stats: &'a Stats, name: &str) -> &'a chatterbox_ort::residency::ComponentStats {
    stats
        .components
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no stats for {name}"))
}

#[test]
fn audio_is_bit_identical_across_policies() {
    let reference = speak(&engine("resident"));
    for preset in [
        "swap",
        "swap,prefetch",
        "cpu",
        "idle=0.05",
        "swap,ram-cache",
        "budget=135MiB",
    ] {
        let engine = engine(preset);
        if preset.starts_with("budget") {
            // The budget is chosen so the planner must mix policies.
            let policies: Vec<Policy> = engine
                .host()
                .stats()
                .components
                .iter()
                .map(|c| c.policy)
                .collect();
            assert!(
                policies.contains(&Policy::Swap) && policies.contains(&Policy::Resident),
                "{preset} should mix resident and swap, got {policies:?}"
            );
        }
        let samples = speak(&engine);
        assert!(
            samples == reference,
            "residency `{preset}` changed the audio (first difference at sample {:?})",
            samples
                .iter()
                .zip(&reference)
                .position(|(a, b)| a.to_bits() != b.to_bits())
        );
    }
}

#[test]
fn session_cache_is_written_once_then_used_and_changes_no_sample() {
    let reference = speak(&engine("resident"));
    let dir = TempDir::new("cache");
    let cache = dir.0.join("sessions");
    // First engine writes every component's entry; the second (and swap's re-creations)
    // load them with the pre-packed weights mapped.
    for (round, preset) in ["resident", "resident", "swap"].into_iter().enumerate() {
        let engine = engine_with_cache(preset, Some(cache.clone()));
        let samples = speak(&engine);
        assert!(
            samples == reference,
            "session cache (round {round}, {preset}) changed the audio"
        );
    }
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let components = chatterbox_ort::residency::Component::ALL.len();
    assert_eq!(
        entries
            .iter()
            .filter(|e| !e.starts_with('.') && *e != "verified")
            .count(),
        components,
        "one entry per component: {entries:?}"
    );
    assert!(
        !entries.iter().any(|e| e.contains(".tmp")),
        "no half-written entry left: {entries:?}"
    );
    for e in entries.iter().filter(|e| *e != "verified") {
        assert!(cache.join(e).join("model.onnx").is_file(), "{e}");
    }
    // Weights of 1 KiB and more (all of the tiny T3 decoder's large ones) and their pre-packed
    // form go into the entry's data file beside its graph.
    let decoder = entries
        .iter()
        .find(|e| e.starts_with("t3_decoder-"))
        .expect("a t3_decoder entry");
    assert!(
        cache.join(decoder).join("weights.data").is_file(),
        "{decoder}: no weights.data"
    );
    assert!(
        std::fs::read_dir(cache.join("verified")).unwrap().count() >= components,
        "verification stamps for the component files"
    );

    // A cache folder that cannot be created (a file in its place) costs speed only.
    let blocked = dir.0.join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let engine = engine_with_cache("swap", Some(blocked.join("sessions")));
    assert!(speak(&engine) == reference, "no cache, same audio");
}

#[test]
fn swap_destroys_every_session_after_its_stage() {
    let engine = engine("swap");
    let before = engine.host().stats();
    assert!(
        before
            .components
            .iter()
            .all(|c| !c.loaded && c.sessions_created == 0),
        "swap creates nothing at load"
    );
    speak(&engine);
    speak(&engine);
    let stats = engine.host().stats();
    for name in [
        "t3_decoder",
        "flow_encoder",
        "flow_estimator",
        "hift",
        "perth",
    ] {
        let c = component(&stats, name);
        assert_eq!(c.policy, Policy::Swap, "{name}");
        assert!(!c.loaded, "{name} still has a session after its stage");
        assert_eq!(c.sessions_created, 2, "{name}: one session per synthesis");
        assert_eq!(c.sessions_destroyed, 2, "{name}: every session destroyed");
    }
    // The T3 decoder and S3Gen are never resident together: the decoder is
    // gone before the flow estimator exists (both were destroyed per run).
    assert!(stats.components.iter().all(|c| !c.loaded));
}

#[test]
fn resident_keeps_sessions_and_policy_change_takes_effect_on_a_live_engine() {
    let engine = engine("resident");
    speak(&engine);
    let stats = engine.host().stats();
    let decoder = component(&stats, "t3_decoder");
    assert!(decoder.loaded);
    assert_eq!(
        (decoder.sessions_created, decoder.sessions_destroyed),
        (1, 0)
    );

    engine
        .set_residency("swap".parse::<ResidencyOptions>().unwrap())
        .expect("policy change on a loaded engine");
    speak(&engine);
    let stats = engine.host().stats();
    let decoder = component(&stats, "t3_decoder");
    assert_eq!(decoder.policy, Policy::Swap);
    assert!(
        !decoder.loaded,
        "after the change the decoder is dropped at the end of T3"
    );
    assert!(decoder.sessions_destroyed >= 1);
    let json = engine.stats_json().expect("stats as JSON");
    assert!(
        json.contains("\"policy\":\"swap\""),
        "stats JSON reports the new policy: {json}"
    );
}

#[test]
fn an_impossible_budget_is_refused_with_a_clear_error() {
    let mut opts = EngineOptions::new(tiny());
    opts.residency = "budget=1KiB".parse().unwrap();
    let err = match Engine::load(opts) {
        Ok(_) => panic!("a 1 KiB budget cannot hold the tiny bundle"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Budget);
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && msg.contains("budget"),
        "one line naming the budget: {msg}"
    );

    // The same refusal on a live engine leaves the engine usable.
    let engine = engine("resident");
    let err = engine
        .set_residency("budget=1KiB".parse().unwrap())
        .expect_err("impossible budget on a live engine");
    assert_eq!(err.kind(), ErrorKind::Budget);
    speak(&engine);
}

/// A resident engine creates every session at load exactly once; with two broken components
/// the load error is always the first in pipeline order (`campplus` before `perth`).
#[test]
fn resident_load_creates_each_session_once_and_names_the_first_broken_component() {
    let engine = engine("resident");
    let stats = engine.host().stats();
    assert_eq!(stats.components.len(), 12);
    for c in &stats.components {
        assert!(c.loaded, "{} not created at load", c.name);
        assert_eq!(
            (c.sessions_created, c.sessions_destroyed),
            (1, 0),
            "{}",
            c.name
        );
    }
    drop(engine);

    let dir = TempDir::new("broken");
    pipeline_support::copy_bundle(&tiny(), &dir.0);
    pipeline_support::edit_manifest(&dir.0, |m| {
        for name in ["perth", "campplus"] {
            m["components"][name]["files"][0]["sha256"] = serde_json::Value::String("0".repeat(64));
        }
    });
    for _ in 0..3 {
        let mut opts = EngineOptions::new(dir.0.clone());
        opts.session_cache = None;
        let err = match Engine::load(opts) {
            Ok(_) => panic!("a bundle with two corrupt graphs loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("campplus") && !err.contains("perth") && !err.contains('\n'),
            "{err}"
        );
    }
}
