//! Medians, spreads, ratios to `resident`, and the acceptance figures.

use super::schema::{
    Acceptance, ModeResult, ModeSummary, ResultKind, RunMetrics, Spread, StreamSummary,
};

/// Acceptance target: swap peak RSS at most this fraction of resident peak RSS.
pub const SWAP_PEAK_VS_RESIDENT_MAX: f64 = 0.72;
/// Acceptance target: swap peak RSS at most the largest stage's own peak (issue 10; was
/// 1.15 in issue 4).
pub const SWAP_PEAK_VS_STAGE_MAX: f64 = 1.00;
/// Acceptance target: best swap RTF within this factor of resident RTF (issue 10; was 1.15
/// in issue 4).
pub const SWAP_RTF_VS_RESIDENT_MAX: f64 = 1.10;

/// Median (mean of the middle two for an even count), min and max; zeros for no values.
pub fn spread(values: &[f64]) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
        ratio: None,
    }
}

fn spread_of(runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> f64) -> Spread {
    spread(&runs.iter().map(f).collect::<Vec<_>>())
}

/// Summarises one result (its measured runs; load memory is one sample).
pub fn summarize(r: &ModeResult) -> ModeSummary {
    let runs = &r.runs;
    let device: Vec<f64> = runs
        .iter()
        .filter_map(|m| m.device_peak_bytes.map(|b| b as f64))
        .collect();
    ModeSummary {
        mode: r.mode.clone(),
        framework: r.framework.clone(),
        kind: Some(r.kind),
        runs: runs.len(),
        load_rss_bytes: spread(&[r.load_rss_bytes as f64]),
        peak_rss_bytes: spread_of(runs, |m| m.peak_rss_bytes as f64),
        rtf: spread_of(runs, |m| m.rtf),
        gen_s: spread_of(runs, |m| m.gen_s),
        session_create_s: spread_of(runs, |m| m.session_create_s),
        sessions_created: spread_of(runs, |m| m.sessions_created as f64),
        sessions_destroyed: spread_of(runs, |m| m.sessions_destroyed as f64),
        transfers: spread_of(runs, |m| m.transfers as f64),
        components_offloaded: spread_of(runs, |m| m.components_offloaded as f64),
        device_peak_bytes: (!device.is_empty()).then(|| spread(&device)),
        first_audio_s: spread_of(runs, |m| m.first_audio_s),
        stream: summarize_stream(&r.stream_runs),
    }
}

/// The streamed runs summarised; `None` without any.
pub fn summarize_stream(runs: &[RunMetrics]) -> Option<StreamSummary> {
    (!runs.is_empty()).then(|| StreamSummary {
        runs: runs.len(),
        first_audio_s: spread_of(runs, |m| m.first_audio_s),
        rtf: spread_of(runs, |m| m.rtf),
        gen_s: spread_of(runs, |m| m.gen_s),
        audio_chunks: spread_of(runs, |m| m.audio_chunks as f64),
        max_chunk_latency_s: spread_of(runs, |m| m.max_chunk_latency_s),
        peak_rss_bytes: spread_of(runs, |m| m.peak_rss_bytes as f64),
    })
}

fn set_ratio(s: &mut Spread, base: &Spread) {
    s.ratio = (base.median != 0.0).then(|| s.median / base.median);
}

/// Summaries of every result, each figure with its ratio to the `resident`
/// synthesis result of the same framework (PyTorch rows to `torch-resident`).
pub fn summarize_all(results: &[ModeResult]) -> Vec<ModeSummary> {
    let mut out: Vec<ModeSummary> = results.iter().map(summarize).collect();
    let base_of = |framework: &str| -> Option<ModeSummary> {
        let name = if framework == "pytorch" {
            "torch-resident"
        } else {
            "resident"
        };
        out.iter()
            .find(|s| s.mode == name && s.kind == Some(ResultKind::Synthesis))
            .cloned()
    };
    let bases: Vec<Option<ModeSummary>> = out.iter().map(|s| base_of(&s.framework)).collect();
    for (s, base) in out.iter_mut().zip(bases) {
        let Some(b) = base else { continue };
        set_ratio(&mut s.load_rss_bytes, &b.load_rss_bytes);
        set_ratio(&mut s.peak_rss_bytes, &b.peak_rss_bytes);
        set_ratio(&mut s.rtf, &b.rtf);
        set_ratio(&mut s.gen_s, &b.gen_s);
        set_ratio(&mut s.session_create_s, &b.session_create_s);
        set_ratio(&mut s.sessions_created, &b.sessions_created);
        set_ratio(&mut s.sessions_destroyed, &b.sessions_destroyed);
        set_ratio(&mut s.transfers, &b.transfers);
        set_ratio(&mut s.components_offloaded, &b.components_offloaded);
        if let (Some(d), Some(bd)) = (s.device_peak_bytes.as_mut(), b.device_peak_bytes.as_ref()) {
            set_ratio(d, bd);
        }
        set_ratio(&mut s.first_audio_s, &b.first_audio_s);
        if let (Some(st), Some(bs)) = (s.stream.as_mut(), b.stream.as_ref()) {
            set_ratio(&mut st.first_audio_s, &bs.first_audio_s);
            set_ratio(&mut st.rtf, &bs.rtf);
            set_ratio(&mut st.gen_s, &bs.gen_s);
            set_ratio(&mut st.audio_chunks, &bs.audio_chunks);
            set_ratio(&mut st.max_chunk_latency_s, &bs.max_chunk_latency_s);
            set_ratio(&mut st.peak_rss_bytes, &bs.peak_rss_bytes);
        }
    }
    out
}

/// Whether a mode is a swap configuration of the Rust engine (`swap`, `swap-prefetch`,
/// `swap+opt-cache`, ...).
pub fn is_swap_mode(mode: &str) -> bool {
    mode == "swap" || mode.starts_with("swap-") || mode.starts_with("swap+")
}

/// The acceptance figures from the summaries of one report.
pub fn acceptance(summary: &[ModeSummary]) -> Acceptance {
    let find = |mode: &str, kind: ResultKind| {
        summary
            .iter()
            .find(|s| s.mode == mode && s.kind == Some(kind) && s.framework == "onnxruntime")
    };
    let resident = find("resident", ResultKind::Synthesis);
    let swap = find("swap", ResultKind::Synthesis);
    let stage = summary
        .iter()
        .find(|s| s.kind == Some(ResultKind::LargestStage) && s.framework == "onnxruntime");
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);

    let mut acc = Acceptance::default();
    if let (Some(s), Some(r)) = (swap, resident) {
        acc.swap_peak_vs_resident = ratio(s.peak_rss_bytes.median, r.peak_rss_bytes.median);
    }
    if let (Some(s), Some(st)) = (swap, stage) {
        acc.swap_peak_vs_largest_stage = ratio(s.peak_rss_bytes.median, st.peak_rss_bytes.median);
    }
    let best = summary
        .iter()
        .filter(|s| {
            is_swap_mode(&s.mode)
                && s.kind == Some(ResultKind::Synthesis)
                && s.framework == "onnxruntime"
                && s.runs > 0
        })
        .min_by(|a, b| a.rtf.median.total_cmp(&b.rtf.median));
    if let (Some(b), Some(r)) = (best, resident) {
        acc.best_swap_mode = Some(b.mode.clone());
        acc.best_swap_rtf_vs_resident = ratio(b.rtf.median, r.rtf.median);
    }

    let verdict = |what: &str, v: Option<f64>, max: f64| match v {
        Some(x) => format!(
            "{what}: {x:.3} (target <= {max:.2}): {}",
            if x <= max { "MET" } else { "NOT MET" }
        ),
        None => format!("{what}: not measured"),
    };
    acc.verdicts = vec![
        verdict(
            "swap peak RSS / resident peak RSS",
            acc.swap_peak_vs_resident,
            SWAP_PEAK_VS_RESIDENT_MAX,
        ),
        verdict(
            "swap peak RSS / largest stage alone peak RSS",
            acc.swap_peak_vs_largest_stage,
            SWAP_PEAK_VS_STAGE_MAX,
        ),
        verdict(
            &format!(
                "best swap config ({}) RTF / resident RTF",
                acc.best_swap_mode.as_deref().unwrap_or("-")
            ),
            acc.best_swap_rtf_vs_resident,
            SWAP_RTF_VS_RESIDENT_MAX,
        ),
    ];
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::schema::SCHEMA;

    fn result(mode: &str, kind: ResultKind, peaks: &[u64], rtfs: &[f64]) -> ModeResult {
        ModeResult {
            schema: SCHEMA.into(),
            mode: mode.into(),
            kind,
            framework: "onnxruntime".into(),
            provider: "cpu".into(),
            tokens: 10,
            load_s: 1.0,
            rss_before_load_bytes: 0,
            load_rss_bytes: 100,
            warmup: None,
            runs: peaks
                .iter()
                .zip(rtfs)
                .map(|(&p, &r)| RunMetrics {
                    peak_rss_bytes: p,
                    rtf: r,
                    ..Default::default()
                })
                .collect(),
            stream_warmup: None,
            stream_runs: vec![],
            load_average: vec![],
            process_peak_rss_bytes: 0,
            swap_cost: vec![],
            notes: vec![],
            versions: Default::default(),
            engine_stats: None,
        }
    }

    #[test]
    fn swap_modes() {
        assert!(
            is_swap_mode("swap") && is_swap_mode("swap-prefetch") && is_swap_mode("swap+opt-cache")
        );
        assert!(!is_swap_mode("resident") && !is_swap_mode("swapx"));
    }

    #[test]
    fn spread_median_min_max() {
        let s = spread(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(spread(&[]), Spread::default());
    }

    #[test]
    fn ratios_and_acceptance() {
        let results = vec![
            result(
                "resident",
                ResultKind::Synthesis,
                &[1000, 1000, 1000],
                &[1.0, 1.0, 1.0],
            ),
            result(
                "swap",
                ResultKind::Synthesis,
                &[700, 710, 690],
                &[1.2, 1.3, 1.25],
            ),
            result(
                "swap-prefetch",
                ResultKind::Synthesis,
                &[720, 720, 720],
                &[1.1, 1.1, 1.1],
            ),
            result("largest-stage", ResultKind::LargestStage, &[650], &[0.5]),
        ];
        let s = summarize_all(&results);
        assert_eq!(s[1].peak_rss_bytes.ratio, Some(0.7));
        let acc = acceptance(&s);
        assert_eq!(acc.swap_peak_vs_resident, Some(0.7));
        assert!((acc.swap_peak_vs_largest_stage.unwrap() - 700.0 / 650.0).abs() < 1e-12);
        assert_eq!(acc.best_swap_mode.as_deref(), Some("swap-prefetch"));
        assert!((acc.best_swap_rtf_vs_resident.unwrap() - 1.1).abs() < 1e-12);
        assert!(acc.verdicts[0].ends_with("MET"));
        assert!(acc.verdicts[0].contains("0.700"));
        assert!(s.iter().all(|x| x.stream.is_none()));
    }

    #[test]
    fn streamed_runs_are_summarised_with_ratios() {
        let streamed = |first: f64, rtf: f64, chunks: usize, gap: f64, peak: u64| RunMetrics {
            first_audio_s: first,
            rtf,
            audio_chunks: chunks,
            max_chunk_latency_s: gap,
            peak_rss_bytes: peak,
            ..Default::default()
        };
        let mut resident = result(
            "resident",
            ResultKind::Synthesis,
            &[1000, 1000, 1000],
            &[1.0, 1.0, 1.0],
        );
        for (m, first) in resident.runs.iter_mut().zip([4.0, 5.0, 6.0]) {
            m.first_audio_s = first;
        }
        resident.stream_runs = vec![
            streamed(0.5, 1.2, 3, 1.0, 1100),
            streamed(0.7, 1.4, 3, 1.5, 1200),
            streamed(0.6, 1.3, 3, 2.0, 1300),
        ];
        let mut swap = result("swap", ResultKind::Synthesis, &[700], &[1.2]);
        swap.stream_runs = vec![streamed(1.2, 2.6, 3, 3.0, 800)];
        let s = summarize_all(&[resident, swap]);
        assert_eq!(
            (
                s[0].first_audio_s.median,
                s[0].first_audio_s.min,
                s[0].first_audio_s.max
            ),
            (5.0, 4.0, 6.0)
        );
        let st = s[0].stream.as_ref().unwrap();
        assert_eq!(st.runs, 3);
        assert_eq!(st.first_audio_s.median, 0.6);
        assert_eq!((st.rtf.median, st.rtf.min, st.rtf.max), (1.3, 1.2, 1.4));
        assert_eq!(st.audio_chunks.median, 3.0);
        assert_eq!(st.max_chunk_latency_s.max, 2.0);
        assert_eq!(st.peak_rss_bytes.median, 1200.0);
        let sw = s[1].stream.as_ref().unwrap();
        assert_eq!(sw.first_audio_s.ratio, Some(2.0));
        assert_eq!(sw.rtf.ratio, Some(2.0));
        assert_eq!(sw.max_chunk_latency_s.ratio, Some(2.0));
    }
}
