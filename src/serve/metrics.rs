//! `GET /metrics`: Prometheus text exposition of the server and the engine.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::queue::Admission;
use crate::engine::Engine;
use crate::stats::{self, DeviceMemoryReport};
use crate::Provider;

/// Labels of `chatterbox_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route (`/v1/audio/speech`, ...).
    pub route: String,
    /// The HTTP status answered (499: the client went away first).
    pub status: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from a speech request's arrival to its last byte.
    pub latency: Histogram,
    /// Seconds from a speech request's arrival to its first audio bytes.
    pub first_audio: Histogram,
    /// Real-time factor of finished syntheses (synthesis seconds / audio seconds).
    pub rtf: Histogram,
    /// Seconds of audio produced.
    pub audio_seconds: Counter<f64, AtomicU64>,
}

/// Values read at scrape time: queue, running syntheses, sessions, memory.
#[derive(Debug)]
struct Live {
    admission: Arc<Admission>,
    engine: Arc<EngineRef>,
}

/// The engine, for the collector (`Engine` has no `Debug`).
pub struct EngineRef(pub Arc<Engine>);

impl std::fmt::Debug for EngineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
    ]
    .into_iter()
}

impl Metrics {
    /// Registers everything; the live values come from `admission` and `engine`.
    pub fn new(admission: Arc<Admission>, engine: Arc<Engine>) -> Metrics {
        let mut registry = Registry::with_prefix("chatterbox");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = Histogram::new(latency_buckets());
        registry.register(
            "request_duration_seconds",
            "Speech requests: seconds from arrival to the last byte",
            latency.clone(),
        );
        let first_audio = Histogram::new(latency_buckets());
        registry.register(
            "time_to_first_audio_seconds",
            "Speech requests: seconds from arrival to the first audio bytes",
            first_audio.clone(),
        );
        let rtf = Histogram::new([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0]);
        registry.register(
            "rtf",
            "Real-time factor of finished syntheses (seconds of work per second of audio)",
            rtf.clone(),
        );
        let audio_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "audio_seconds",
            "Seconds of audio produced",
            audio_seconds.clone(),
        );
        registry.register_collector(Box::new(Live {
            admission,
            engine: Arc::new(EngineRef(engine)),
        }));
        Metrics {
            registry,
            requests,
            latency,
            first_audio,
            rtf,
            audio_seconds,
        }
    }

    /// Counts one answered request.
    pub fn count(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl prometheus_client::collector::Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "queue_depth",
            "Speech requests waiting for a synthesis slot",
            self.admission.waiting() as i64,
        )?;
        gauge(
            &mut encoder,
            "syntheses_running",
            "Syntheses running now",
            self.admission.running() as i64,
        )?;
        let engine = &self.engine.0;
        let s = engine.host().stats();
        counter(
            &mut encoder,
            "sessions_created",
            "ONNX Runtime sessions created (component loads)",
            s.sessions_created(),
        )?;
        counter(
            &mut encoder,
            "sessions_destroyed",
            "ONNX Runtime sessions destroyed (offloads)",
            s.sessions_destroyed(),
        )?;
        let loaded = crate::residency::Component::ALL
            .into_iter()
            .filter(|c| engine.host().is_loaded(*c))
            .count();
        gauge(
            &mut encoder,
            "sessions_loaded",
            "Components with a session now",
            loaded as i64,
        )?;
        if let Some(rss) = stats::rss_bytes() {
            gauge(
                &mut encoder,
                "resident_memory_bytes",
                "Resident set size of the process",
                to_i64(rss),
            )?;
        }
        if let Provider::Cuda { device } | Provider::Auto { device } = engine.host().provider() {
            if let DeviceMemoryReport::Available(m) = stats::device_memory(device) {
                gauge(
                    &mut encoder,
                    "device_memory_used_bytes",
                    "GPU memory in use on the engine's device (all processes)",
                    to_i64(m.used_bytes),
                )?;
            }
        }
        Ok(())
    }
}
