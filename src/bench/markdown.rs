//! The Markdown report: machine, figures per mode (median and spread), ratios
//! to `resident`, acceptance figures, the swap-cost split and notes.

use std::fmt::Write as _;

use super::schema::{ModeSummary, Report, ResultKind, Spread};

const MIB: f64 = 1024.0 * 1024.0;

fn mib(s: &Spread) -> String {
    if s.min == s.max {
        format!("{:.0}", s.median / MIB)
    } else {
        format!(
            "{:.0} ({:.0}-{:.0})",
            s.median / MIB,
            s.min / MIB,
            s.max / MIB
        )
    }
}

fn num(s: &Spread, decimals: usize) -> String {
    if s.min == s.max {
        format!("{:.*}", decimals, s.median)
    } else {
        format!(
            "{:.*} ({:.*}-{:.*})",
            decimals, s.median, decimals, s.min, decimals, s.max
        )
    }
}

fn ratio(s: &Spread) -> String {
    s.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

fn kind_label(s: &ModeSummary) -> &'static str {
    match s.kind {
        Some(ResultKind::LargestStage) => " (largest stage alone)",
        _ => "",
    }
}

/// Renders the whole report as Markdown.
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let cfg = |k: &str| report.config.get(k).cloned().unwrap_or_else(|| "-".into());
    let version = |k: &str| {
        report
            .results
            .iter()
            .find_map(|r| r.versions.get(k).cloned())
    };
    let _ = writeln!(md, "# chatterbox-ort residency benchmark\n");
    let _ = writeln!(
        md,
        "- Machine: {} ({} cores), {:.1} GiB RAM, Linux {}{}",
        m.cpu,
        m.cores,
        m.ram_bytes as f64 / (MIB * 1024.0),
        m.kernel,
        m.gpu
            .as_ref()
            .map(|g| format!(", GPU {g}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "- ONNX Runtime {}, provider `{}`, threads {}{}",
        version("onnxruntime").unwrap_or_else(|| "-".into()),
        cfg("provider"),
        cfg("threads"),
        version("torch")
            .map(|v| format!("; PyTorch {v} (baseline)"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "- Bundle `{}`; {} speech tokens per synthesis; {} measured runs per mode after one warm-up; \
         each mode in a fresh process",
        cfg("bundle"),
        cfg("tokens"),
        cfg("runs")
    );
    let _ = writeln!(
        md,
        "- Memory is process RSS (peak = VmHWM, reset before each run); RTF = wall time / audio seconds\n"
    );

    let _ = writeln!(md, "## Figures per mode: median (min-max)\n");
    let _ = writeln!(
        md,
        "| mode | framework | load RSS MiB | peak RSS MiB | RTF | generation s | session create s | sessions created | sessions destroyed | transfers | components offloaded |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &report.summary {
        if s.kind == Some(ResultKind::SwapCost) {
            continue;
        }
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.mode,
            kind_label(s),
            s.framework,
            mib(&s.load_rss_bytes),
            mib(&s.peak_rss_bytes),
            num(&s.rtf, 3),
            num(&s.gen_s, 2),
            num(&s.session_create_s, 2),
            num(&s.sessions_created, 0),
            num(&s.sessions_destroyed, 0),
            num(&s.transfers, 0),
            num(&s.components_offloaded, 0),
        );
    }
    if report.summary.iter().any(|s| s.device_peak_bytes.is_some()) {
        let _ = writeln!(md, "\nDevice memory peak (NVML), MiB:\n");
        let _ = writeln!(md, "| mode | device peak MiB | ratio to resident |");
        let _ = writeln!(md, "|---|---|---|");
        for s in &report.summary {
            if let Some(d) = &s.device_peak_bytes {
                let _ = writeln!(md, "| {} | {} | {} |", s.mode, mib(d), ratio(d));
            }
        }
    }

    render_streaming(&mut md, report);

    let _ = writeln!(
        md,
        "\n## Ratios to `resident` of the same framework (median / resident median)\n"
    );
    let _ = writeln!(
        md,
        "| mode | load RSS | peak RSS | RTF | generation | session create | sessions created | transfers |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for s in &report.summary {
        if s.kind == Some(ResultKind::SwapCost) {
            continue;
        }
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} |",
            s.mode,
            kind_label(s),
            ratio(&s.load_rss_bytes),
            ratio(&s.peak_rss_bytes),
            ratio(&s.rtf),
            ratio(&s.gen_s),
            ratio(&s.session_create_s),
            ratio(&s.sessions_created),
            ratio(&s.transfers),
        );
    }

    let _ = writeln!(md, "\n## Acceptance\n");
    for v in &report.acceptance.verdicts {
        let _ = writeln!(md, "- {v}");
    }

    for r in report.results.iter().filter(|r| !r.swap_cost.is_empty()) {
        let _ = writeln!(
            md,
            "\n## What a swap costs: session creation split ({}, {}; median of {} repeats)\n",
            r.framework,
            r.provider,
            r.swap_cost.first().map_or(0, |c| c.repeats)
        );
        let _ = writeln!(
            md,
            "| component | MiB | read files s | create from files s | files, optimized cache s | from RAM s | RAM, optimized cache s | = file read s | = graph optimization s | = initializer set-up s |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        let mut total = [0.0f64; 8];
        for c in &r.swap_cost {
            let row = [
                c.read_s,
                c.create_file_s,
                c.create_file_cached_s,
                c.create_memory_s,
                c.create_memory_cached_s,
                c.part_file_read_s,
                c.part_optimize_s,
                c.part_initializers_s,
            ];
            for (t, v) in total.iter_mut().zip(row) {
                *t += v;
            }
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} |",
                c.component,
                c.file_bytes as f64 / MIB,
                row.map(|v| format!("{v:.3}")).join(" | ")
            );
        }
        let bytes: u64 = r.swap_cost.iter().map(|c| c.file_bytes).sum();
        let _ = writeln!(
            md,
            "| **all** | {:.0} | {} |",
            bytes as f64 / MIB,
            total.map(|v| format!("{v:.3}")).join(" | ")
        );
        let _ = writeln!(
            md,
            "\nfile read = from files - from RAM; graph optimization = from files - from files with \
             the optimized-model cache; initializer set-up = from RAM with the optimized cache \
             (session construction included). Negative parts mean the difference is within noise."
        );
        let _ = writeln!(
            md,
            "\nMemory of one session: RSS it adds while alive, and the peak above the RSS before \
             creation while it is being created (from the files; from bytes already in RAM).\n"
        );
        let _ = writeln!(
            md,
            "| component | weights MiB | session RSS MiB | creation peak, files MiB | creation peak, RAM MiB |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for c in &r.swap_cost {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                c.component,
                c.file_bytes as f64 / MIB,
                c.session_rss_bytes as f64 / MIB,
                c.create_peak_file_bytes as f64 / MIB,
                c.create_peak_memory_bytes as f64 / MIB
            );
        }
    }

    let noted: Vec<_> = report
        .results
        .iter()
        .filter(|r| !r.notes.is_empty())
        .collect();
    if !noted.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for r in noted {
            for n in &r.notes {
                let _ = writeln!(md, "- `{}` ({}): {}", r.mode, r.framework, n);
            }
        }
    }
    md
}

/// A spread, or `-` when it was not measured (all zeros).
fn num_or_dash(s: &Spread, decimals: usize) -> String {
    if s.max == 0.0 {
        "-".into()
    } else {
        num(s, decimals)
    }
}

/// The time-to-first-audio and streaming table (synthesis modes that measured either).
fn render_streaming(md: &mut String, report: &Report) {
    let rows: Vec<&ModeSummary> = report
        .summary
        .iter()
        .filter(|s| {
            s.kind == Some(ResultKind::Synthesis)
                && s.runs > 0
                && (s.first_audio_s.max > 0.0 || s.stream.is_some())
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Time to first audio and streaming: median (min-max)\n"
    );
    let _ = writeln!(
        md,
        "| mode | framework | first audio s | first audio s, streamed | RTF | RTF, streamed | audio chunks, streamed | max chunk latency s, streamed | peak RSS MiB | peak RSS MiB, streamed |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for s in rows {
        let dash = || "-".to_string();
        let st = s.stream.as_ref();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.mode,
            s.framework,
            num_or_dash(&s.first_audio_s, 2),
            st.map_or_else(dash, |t| num(&t.first_audio_s, 2)),
            num(&s.rtf, 3),
            st.map_or_else(dash, |t| num(&t.rtf, 3)),
            st.map_or_else(dash, |t| num(&t.audio_chunks, 0)),
            st.map_or_else(dash, |t| num(&t.max_chunk_latency_s, 2)),
            mib(&s.peak_rss_bytes),
            st.map_or_else(dash, |t| mib(&t.peak_rss_bytes)),
        );
    }
    let _ = writeln!(
        md,
        "\nFirst audio: seconds from the call's start to its first audio (without streaming the \
         whole synthesis of the one-chunk text). Streamed: `Engine::synthesize_stream` with the \
         same request{}, run right after each non-streamed run; its RTF is its wall time over \
         the audio seconds; chunk latency is the gap between two deliveries (the first counted \
         from the start).",
        report
            .config
            .get("stream")
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
}

/// A compact table for the README: per mode peak RSS and RTF with their ratios
/// to `resident`, sessions created per synthesis, and the acceptance lines.
/// `full_report` is the link to the full Markdown report.
pub fn render_snippet(report: &Report, full_report: &str) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let cfg = |k: &str| report.config.get(k).cloned().unwrap_or_else(|| "-".into());
    let _ = writeln!(
        md,
        "{} speech tokens per synthesis, median over {} measured run(s) per mode, each mode in a fresh process; \
         {} ({} cores, {:.0} GiB RAM), provider `{}`; PyTorch rows are ratios to `torch-resident`. \
         Full report: [{full_report}]({full_report}).\n",
        cfg("tokens"),
        cfg("runs"),
        m.cpu,
        m.cores,
        m.ram_bytes as f64 / (MIB * 1024.0),
        cfg("provider"),
    );
    let _ = writeln!(
        md,
        "| mode | peak RSS MiB | x resident | RTF | x resident | sessions created per synthesis |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for s in &report.summary {
        if s.kind == Some(ResultKind::SwapCost) || s.runs == 0 {
            continue;
        }
        let _ = writeln!(
            md,
            "| {}{}{} | {:.0} | {} | {:.2} | {} | {:.0} |",
            s.mode,
            kind_label(s),
            if s.framework == "pytorch" {
                " (PyTorch)"
            } else {
                ""
            },
            s.peak_rss_bytes.median / MIB,
            ratio(&s.peak_rss_bytes),
            s.rtf.median,
            ratio(&s.rtf),
            s.sessions_created.median,
        );
    }
    let _ = writeln!(md);
    for v in &report.acceptance.verdicts {
        let _ = writeln!(md, "- {v}");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::schema::{Machine, ModeResult, RunMetrics, SwapCost, SCHEMA};
    use crate::bench::summary;

    #[test]
    fn renders_tables_and_verdicts() {
        let run = RunMetrics {
            peak_rss_bytes: 512 << 20,
            rtf: 1.5,
            gen_s: 6.0,
            audio_s: 4.0,
            ..Default::default()
        };
        let mk = |mode: &str, kind| ModeResult {
            schema: SCHEMA.into(),
            mode: mode.into(),
            kind,
            framework: "onnxruntime".into(),
            provider: "cpu".into(),
            tokens: 100,
            load_s: 1.0,
            rss_before_load_bytes: 0,
            load_rss_bytes: 300 << 20,
            warmup: None,
            runs: vec![run.clone(), run.clone()],
            stream_warmup: None,
            stream_runs: vec![],
            load_average: vec![],
            process_peak_rss_bytes: 0,
            swap_cost: if kind == ResultKind::SwapCost {
                vec![SwapCost {
                    component: "t3_decoder".into(),
                    file_bytes: 1 << 30,
                    repeats: 3,
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            notes: vec!["a note".into()],
            versions: [("onnxruntime".to_string(), "1.32.0".to_string())].into(),
            engine_stats: None,
        };
        let mut results = vec![
            mk("resident", ResultKind::Synthesis),
            mk("swap", ResultKind::Synthesis),
            mk("swap-cost", ResultKind::SwapCost),
        ];
        for r in &mut results[..2] {
            for m in &mut r.runs {
                m.first_audio_s = 6.0;
            }
        }
        results[0].stream_runs = vec![
            RunMetrics {
                first_audio_s: 0.5,
                rtf: 1.8,
                audio_chunks: 4,
                max_chunk_latency_s: 2.25,
                peak_rss_bytes: 600 << 20,
                ..Default::default()
            },
            RunMetrics {
                first_audio_s: 0.7,
                rtf: 2.0,
                audio_chunks: 4,
                max_chunk_latency_s: 2.75,
                peak_rss_bytes: 600 << 20,
                ..Default::default()
            },
        ];
        let summary = summary::summarize_all(&results);
        let acceptance = summary::acceptance(&summary);
        let report = Report {
            schema: SCHEMA.into(),
            config: [(
                "stream".to_string(),
                "first chunk 20 tokens, then every 40 tokens, overlap false".to_string(),
            )]
            .into(),
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                ram_bytes: 1 << 30,
                ..Default::default()
            },
            results,
            summary,
            acceptance,
            ..Default::default()
        };
        let md = render(&report);
        assert!(md.contains("Test CPU (2 cores)"));
        assert!(md.contains("ONNX Runtime 1.32.0"));
        assert!(md.contains("| swap | onnxruntime | 300 | 512 | 1.500 |"));
        assert!(md.contains("swap peak RSS / resident peak RSS: 1.000"));
        assert!(md.contains("| t3_decoder | 1024 |"));
        assert!(md.contains("a note"));
        assert!(md.contains("## Time to first audio and streaming"), "{md}");
        assert!(
            md.contains(
                "| resident | onnxruntime | 6.00 | 0.60 (0.50-0.70) | 1.500 | 1.900 (1.800-2.000) | 4 | 2.50 (2.25-2.75) | 512 | 600 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| swap | onnxruntime | 6.00 | - | 1.500 | - | - | - | 512 | - |"),
            "{md}"
        );
        assert!(md.contains("(first chunk 20 tokens, then every 40 tokens, overlap false)"));
        let snippet = render_snippet(&report, "benches/results/x.md");
        assert!(
            snippet.contains("| swap | 512 | 1.00 | 1.50 | 1.00 | 0 |"),
            "{snippet}"
        );
    }
}
