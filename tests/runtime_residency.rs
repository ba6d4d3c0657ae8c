//! The residency host on a fixture bundle with all twelve components (each the tiny
//! external-data graph `toy_ext`: x [1, 8] -> y = 2x + (0..8)): session creation and
//! destruction counts per policy, stages, prefetch, idle reaping, budget, live changes.

mod runtime_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterbox_ort::bundle::Bundle;
use chatterbox_ort::error::ErrorKind;
use chatterbox_ort::residency::{Component, Host, Policy, ResidencyOptions, Stage};
use chatterbox_ort::runtime::{Provider, Value};
use runtime_common::*;

struct Fixture {
    _dir: Scratch,
    bundle: Arc<Bundle>,
}

fn fixture() -> Fixture {
    init_runtime();
    let dir = Scratch::new("res");
    let comps: Vec<(&str, &str)> = Component::ALL
        .iter()
        .map(|c| (c.name(), "toy_ext"))
        .collect();
    write_bundle(dir.path(), &comps);
    let bundle = Arc::new(Bundle::open(dir.path()).unwrap());
    Fixture { _dir: dir, bundle }
}

fn host(f: &Fixture, residency: &str) -> Host {
    Host::new(
        Arc::clone(&f.bundle),
        Provider::Cpu,
        Some(1),
        residency.parse().unwrap(),
    )
    .unwrap()
}

fn run(host: &Host, c: Component) {
    let mut out = host
        .run(
            c,
            vec![("x", Value::from_f32(&[1, 8], vec![1.0; 8]).unwrap())],
        )
        .unwrap();
    let y = out.take("y").unwrap().to_array_f32().unwrap();
    assert_eq!(y[[0, 7]], 9.0, "{c}");
}

fn created(host: &Host, c: Component) -> (u64, u64) {
    let s = host.stats();
    let cs = s.component(c.name()).unwrap();
    (cs.sessions_created, cs.sessions_destroyed)
}

fn totals(host: &Host) -> (u64, u64) {
    let s = host.stats();
    (s.sessions_created(), s.sessions_destroyed())
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn host_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Host>();
}

#[test]
fn resident_creates_everything_at_load_and_never_destroys() {
    let f = fixture();
    let h = host(&f, "resident");
    assert_eq!(totals(&h), (12, 0));
    for s in Stage::ALL {
        let _g = h.stage(s).unwrap();
        for c in s.components() {
            run(&h, c);
        }
    }
    assert_eq!(totals(&h), (12, 0));
    let st = h.stats();
    assert!(st
        .components
        .iter()
        .all(|c| c.loaded && c.policy == Policy::Resident));
    assert_eq!(st.component("t3_decoder").unwrap().run_count, 1);
}

#[test]
fn swap_creates_per_stage_and_destroys_at_stage_end() {
    let f = fixture();
    let h = host(&f, "swap");
    assert_eq!(totals(&h), (0, 0), "swap creates nothing at load");
    for round in 1..=2u64 {
        {
            let _g = h.stage(Stage::T3).unwrap();
            run(&h, Component::T3TextEmbed);
            run(&h, Component::T3Decoder);
            run(&h, Component::T3Decoder);
            run(&h, Component::T3SpeechEmbed);
            assert!(h.is_loaded(Component::T3Decoder));
            assert_eq!(created(&h, Component::T3Decoder), (round, round - 1));
        }
        assert!(!h.is_loaded(Component::T3Decoder));
        assert_eq!(created(&h, Component::T3Decoder), (round, round));
        assert_eq!(totals(&h), (3 * round, 3 * round));
    }
    // A component of another stage used inside a stage lives until that stage ends.
    {
        let _g = h.stage(Stage::Conditioning).unwrap();
        run(&h, Component::T3Cond);
        run(&h, Component::T3SpeechEmbed);
        assert!(h.is_loaded(Component::T3SpeechEmbed));
    }
    assert!(!h.is_loaded(Component::T3SpeechEmbed));
    assert_eq!(created(&h, Component::T3SpeechEmbed), (3, 3));
    // Used outside any stage: destroyed right after the call.
    run(&h, Component::Perth);
    assert!(!h.is_loaded(Component::Perth));
    assert_eq!(created(&h, Component::Perth), (1, 1));
    let st = h.stats();
    assert_eq!(st.stages[&Stage::T3].entered, 2);
    assert!(st.stages[&Stage::T3].rss_after_release_bytes.is_some());
}

#[test]
fn nested_guards_keep_sessions_until_the_last_ends() {
    let f = fixture();
    let h = host(&f, "swap");
    let outer = h.stage(Stage::S3Gen).unwrap();
    {
        let _inner = h.stage(Stage::S3Gen).unwrap();
        run(&h, Component::Hift);
    }
    assert!(h.is_loaded(Component::Hift), "outer guard still active");
    drop(outer);
    assert!(!h.is_loaded(Component::Hift));
}

#[test]
fn cpu_policy_on_a_cpu_host_is_resident() {
    let f = fixture();
    let h = host(&f, "cpu");
    assert_eq!(totals(&h), (12, 0));
    assert!(h.stats().components.iter().all(|c| c.target == "cpu"));
    assert_eq!(h.stats().components_on_cpu_off_device(), 0);
}

#[test]
fn idle_sessions_are_reaped() {
    let f = fixture();
    let h = host(&f, "idle=0.1");
    assert_eq!(totals(&h), (0, 0));
    run(&h, Component::Hift);
    assert!(h.is_loaded(Component::Hift));
    wait_until("the reaper", || !h.is_loaded(Component::Hift));
    assert_eq!(created(&h, Component::Hift), (1, 1));
    // Used again: created again.
    run(&h, Component::Hift);
    assert_eq!(created(&h, Component::Hift), (2, 1));
}

#[test]
fn idle_sessions_of_a_held_stage_wait_for_its_end() {
    let f = fixture();
    let h = host(&f, "idle=0.05");
    {
        // A streaming synthesis holds S3Gen across T3's tokens.
        let _held = h.streaming_stages().unwrap();
        run(&h, Component::Hift);
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(
            h.is_loaded(Component::Hift),
            "reaped while its stage was held"
        );
    }
    wait_until("the reaper", || !h.is_loaded(Component::Hift));
    assert_eq!(created(&h, Component::Hift), (1, 1));
}

#[test]
fn prefetch_creates_the_next_stage_in_the_background() {
    let f = fixture();
    let h = host(&f, "swap,prefetch");
    {
        let _g = h.stage(Stage::Conditioning).unwrap();
        run(&h, Component::VoiceEncoder);
        wait_until("prefetch of T3", || {
            Stage::T3.components().all(|c| h.is_loaded(c))
        });
    }
    // The conditioning session went, the prefetched T3 sessions stayed.
    assert!(!h.is_loaded(Component::VoiceEncoder));
    assert!(h.is_loaded(Component::T3Decoder));
    {
        let _g = h.stage(Stage::T3).unwrap();
        run(&h, Component::T3Decoder);
        assert_eq!(
            created(&h, Component::T3Decoder),
            (1, 0),
            "no second creation"
        );
        wait_until("prefetch of S3Gen", || {
            Stage::S3Gen.components().all(|c| h.is_loaded(c))
        });
    }
    assert!(!h.is_loaded(Component::T3Decoder));
    let st = h.stats();
    assert_eq!(st.component("t3_decoder").unwrap().sessions_prefetched, 1);
    assert_eq!(st.component("hift").unwrap().sessions_prefetched, 1);
}

#[test]
fn budget_is_planned_or_refused() {
    let f = fixture();
    // Generous: everything resident.
    let h = host(&f, "budget=1GiB");
    assert_eq!(totals(&h), (12, 0));
    assert!(h.stats().predicted_peak_bytes <= 1 << 30);
    // Below the activation margin alone: impossible.
    let err = Host::new(
        Arc::clone(&f.bundle),
        Provider::Cpu,
        Some(1),
        "budget=1MiB".parse().unwrap(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Budget, "{err}");
    assert!(err.to_string().contains("1.0 MiB"), "{err}");
    // set_residency checks the budget at once and keeps the old options on failure.
    let before = h.stats().residency;
    let e = h.set_residency("budget=1MiB".parse().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Budget);
    drop(h.stage(Stage::T3).unwrap());
    assert_eq!(h.stats().residency, before);
    assert_eq!(totals(&h), (12, 0));
}

#[test]
fn set_residency_takes_effect_at_the_next_stage() {
    let f = fixture();
    let h = host(&f, "resident");
    assert_eq!(totals(&h), (12, 0));
    h.set_residency("swap,t3_decoder=resident".parse().unwrap())
        .unwrap();
    assert_eq!(totals(&h), (12, 0), "nothing changes before a stage");
    {
        let _g = h.stage(Stage::S3Gen).unwrap();
        // Everything but t3_decoder was destroyed on entry, except the active stage's.
        assert!(h.is_loaded(Component::T3Decoder));
        assert!(!h.is_loaded(Component::VoiceEncoder));
        assert!(
            h.is_loaded(Component::Hift),
            "active stage keeps its sessions"
        );
        run(&h, Component::Hift);
    }
    assert!(!h.is_loaded(Component::Hift));
    assert_eq!(totals(&h), (12, 11));
    // And back: resident sessions are created at the next stage entry.
    h.set_residency(ResidencyOptions::default()).unwrap();
    drop(h.stage(Stage::Watermark).unwrap());
    assert!(Component::ALL.iter().all(|c| h.is_loaded(*c)));
    assert_eq!(totals(&h), (23, 11));
}

#[test]
fn concurrent_stages_and_runs() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let f = fixture();
    let h = host(&f, "swap");
    let runs = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (h, runs) = (&h, &runs);
            s.spawn(move || {
                for i in 0..10 {
                    let stage = Stage::ALL[(t + i) % 4];
                    let _g = h.stage(stage).unwrap();
                    for c in stage.components() {
                        run(h, c);
                        runs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (c, d) = totals(&h);
    assert_eq!(c, d, "every swap session destroyed once all guards ended");
    assert!(c >= 12);
    assert_eq!(
        h.stats()
            .components
            .iter()
            .map(|c| c.run_count)
            .sum::<u64>(),
        runs.load(Ordering::Relaxed)
    );
    assert!(Component::ALL.iter().all(|c| !h.is_loaded(*c)));
}

#[test]
fn stats_serialize_to_json() {
    let f = fixture();
    let h = host(&f, "swap");
    drop(h.stage(Stage::T3).unwrap());
    let json = serde_json::to_value(h.stats()).unwrap();
    assert_eq!(json["provider"], "cpu");
    assert_eq!(json["residency"], "swap");
    assert_eq!(json["components"].as_array().unwrap().len(), 12);
    assert_eq!(json["components"][7]["name"], "t3_decoder");
    assert_eq!(json["components"][7]["policy"], "swap");
    assert!(json["rss_bytes"].as_u64().unwrap() > 0);
    assert!(json["stages"]["t3"]["rss_at_end_bytes"].as_u64().is_some());
    let dev = &json["device_memory"];
    assert!(
        dev == "n/a" || dev["total_bytes"].as_u64().is_some(),
        "{dev}"
    );
}

#[test]
fn threads_zero_is_invalid() {
    let f = fixture();
    let err = Host::new(
        Arc::clone(&f.bundle),
        Provider::Cpu,
        Some(0),
        ResidencyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn ram_cache_and_optimized_cache_recreate_from_memory() {
    let f = fixture();
    let cache = f._dir.path().join("opt");
    let mut opts: ResidencyOptions = "swap,ram-cache".parse().unwrap();
    opts.optimized_cache_dir = Some(cache.clone());
    let h = Host::new(Arc::clone(&f.bundle), Provider::Cpu, Some(1), opts).unwrap();
    let from_cache = |h: &Host| {
        h.with_session(Component::FlowEstimator, |s| {
            Ok(s.timings().from_optimized_cache)
        })
        .unwrap()
    };
    {
        let _g = h.stage(Stage::S3Gen).unwrap();
        assert!(
            !from_cache(&h),
            "first creation optimizes and writes the cache"
        );
        run(&h, Component::FlowEstimator);
    }
    assert!(cache.read_dir().unwrap().count() >= 1);
    {
        let _g = h.stage(Stage::S3Gen).unwrap();
        assert!(
            from_cache(&h),
            "re-created from the optimized bytes kept in RAM"
        );
        run(&h, Component::FlowEstimator);
    }
    assert_eq!(created(&h, Component::FlowEstimator), (2, 2));
}

#[test]
fn cuda_is_unavailable_without_a_gpu_and_auto_falls_back() {
    let f = fixture();
    let cuda = Host::new(
        Arc::clone(&f.bundle),
        Provider::Cuda { device: 0 },
        Some(1),
        "resident".parse().unwrap(),
    );
    let auto = Host::new(
        Arc::clone(&f.bundle),
        Provider::Auto { device: 0 },
        Some(1),
        "resident".parse().unwrap(),
    )
    .unwrap();
    run(&auto, Component::Hift);
    let targets: Vec<String> = auto
        .stats()
        .components
        .into_iter()
        .map(|c| c.target)
        .collect();
    match cuda {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
            assert!(targets.iter().all(|t| t == "cpu"), "{targets:?}");
        }
        Ok(_) => assert!(targets.iter().all(|t| t == "cuda"), "{targets:?}"),
    }
    assert_eq!(auto.stats().provider, "auto:0");
}
