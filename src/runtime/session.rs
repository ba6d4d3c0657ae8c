//! [`Session`]: one component's ONNX Runtime session, checked against the manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::ep::{ArenaExtendStrategy, ExecutionProvider};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::RunOptions;
use ort::value::{DynValue, ValueType};

use super::value::{alloc_uninit, dtype_from_ort, ort_type, Value};
use crate::bundle::manifest::{ComponentSpec, DType, Dim, DimsDisplay, TensorSpec};
use crate::error::{Error, Result};

/// Where a session runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Target {
    /// The CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider (needs the CUDA flavour of ONNX Runtime).
    Cuda(CudaOptions),
}

impl Target {
    /// `"cpu"` or `"cuda"`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Cuda(_) => "cuda",
        }
    }
}

/// cuDNN convolution algorithm search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgoSearch {
    /// cuDNN heuristics (fast first run).
    #[default]
    Heuristic,
    /// Benchmark every algorithm (slow first run, ONNX Runtime's own default).
    Exhaustive,
    /// The fixed default algorithm.
    Default,
}

/// CUDA execution provider options.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaOptions {
    /// CUDA device index.
    pub device_id: i32,
    /// Cap on the BFC arena in bytes (`gpu_mem_limit`); `None` = unlimited.
    pub gpu_mem_limit: Option<usize>,
    /// `arena_extend_strategy = kSameAsRequested` (true, default) instead of next power of two.
    pub arena_same_as_requested: bool,
    /// `cudnn_conv_algo_search` (HEURISTIC by default).
    pub conv_algo_search: ConvAlgoSearch,
    /// `session.use_device_allocator_for_initializers = 1` (default true): weights live outside
    /// the arena, so destroying a session returns them and arena shrinkage can work.
    pub device_allocator_for_initializers: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            device_id: 0,
            gpu_mem_limit: None,
            arena_same_as_requested: true,
            conv_algo_search: ConvAlgoSearch::Heuristic,
            device_allocator_for_initializers: true,
        }
    }
}

/// Options for creating a [`Session`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// Execution provider.
    pub target: Target,
    /// Intra-op threads (inter-op is always 1).
    pub threads: usize,
    /// Folder for optimized-model caches: the first creation writes the graph ONNX Runtime
    /// optimized, later creations load that file (keyed by component sha256, target and
    /// ONNX Runtime version).
    pub optimized_model_cache: Option<PathBuf>,
    /// Run option `memory.enable_memory_arena_shrinkage` after every run (returns arena
    /// memory between calls at some speed cost).
    pub arena_shrinkage: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            target: Target::Cpu,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            optimized_model_cache: None,
            arena_shrinkage: false,
        }
    }
}

/// Timing of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SessionTimings {
    /// Wall time of creation (load, optimize, check).
    pub create: Duration,
    /// Whether creation loaded an optimized-model cache file.
    pub from_optimized_cache: bool,
    /// Completed runs.
    pub runs: u64,
    /// Total wall time of those runs.
    pub run_total: Duration,
    /// Host <-> device tensor copies made by those runs (CUDA target: every input and output
    /// is copied once per run, no IoBinding; 0 on the CPU).
    pub transfers: u64,
    /// Bytes moved by those copies.
    pub transfer_bytes: u64,
}

/// A component's graph in memory (see [`Session::create_from_memory`]).
#[derive(Clone)]
pub struct ModelBytes {
    /// The `.onnx` bytes.
    pub graph: Arc<[u8]>,
    /// External data: the file name the graph refers to, and its bytes.
    pub external: Option<(String, Arc<[u8]>)>,
    /// Whether this is an optimized-model cache (loaded without re-optimizing).
    pub optimized: bool,
}

impl ModelBytes {
    /// Total bytes held.
    pub fn len(&self) -> usize {
        self.graph.len() + self.external.as_ref().map_or(0, |(_, b)| b.len())
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for ModelBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelBytes")
            .field("graph", &self.graph.len())
            .field(
                "external",
                &self.external.as_ref().map(|(n, b)| (n, b.len())),
            )
            .field("optimized", &self.optimized)
            .finish()
    }
}

/// A tensor a graph reads as input `input` and writes in place as output `output` (e.g. a
/// fixed-capacity KV cache): see [`Session::run_in_place`].
#[derive(Debug)]
pub struct StateTensor {
    /// The graph input that reads it.
    pub input: String,
    /// The graph output that writes it.
    pub output: String,
    /// The buffer (from [`Session::alloc`] or [`Value::alloc`], of the dtype the manifest
    /// declares for `input`: a tensor made from
    /// host data by `Value::from_f32` cannot be bound as an output).
    pub value: Value,
}

/// One component's ONNX Runtime session.
pub struct Session {
    name: String,
    spec: ComponentSpec,
    target: Target,
    inner: ort::session::Session,
    run_options: Option<RunOptions>,
    timings: SessionTimings,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("target", &self.target.name())
            .field("timings", &self.timings)
            .finish()
    }
}

fn rt(component: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::runtime(format!("component `{component}`: {what}: {e}"))
}

impl Session {
    /// Creates the session of component `name` from `bundle_dir` (graph `spec.files[0]`,
    /// external data beside it) and checks its real inputs and outputs against `spec`: names,
    /// dtypes, ranks and fixed dims. A difference is `Error::ModelMismatch`.
    ///
    /// Does not hash the files: the caller verifies them first
    /// ([`Bundle::verify_component`](crate::bundle::Bundle::verify_component)).
    pub fn create(
        bundle_dir: &Path,
        name: &str,
        spec: &ComponentSpec,
        opts: &SessionOptions,
    ) -> Result<Session> {
        let start = Instant::now();
        let env = super::environment()?;
        let graph = spec.files.first().ok_or_else(|| {
            Error::bundle(
                bundle_dir.join("manifest.json"),
                format!("component `{name}` lists no files"),
            )
        })?;
        let model_path = bundle_dir.join(&graph.path);
        if !model_path.is_file() {
            return Err(Error::bundle(
                &model_path,
                format!("graph of component `{name}` is missing"),
            ));
        }
        if opts.threads == 0 {
            return Err(Error::invalid_argument("threads", "must be >= 1"));
        }

        let cache = opts
            .optimized_model_cache
            .as_ref()
            .map(|dir| cache_paths(dir, name, spec, &opts.target));
        let mut from_cache = false;
        let inner = match &cache {
            Some(c) if c.model.is_file() => {
                match base_builder(env, name, opts)?
                    .with_optimization_level(GraphOptimizationLevel::Disable)
                    .map_err(|e| rt(name, "setting optimization level", e))?
                    .commit_from_file(&c.model)
                {
                    Ok(s) => {
                        from_cache = true;
                        s
                    }
                    Err(e) => {
                        tracing::warn!(component = name, cache = %c.dir.display(), error = %e,
                            "optimized-model cache unusable; rebuilding it");
                        let _ = std::fs::remove_dir_all(&c.dir);
                        build_writing_cache(env, name, opts, &model_path, Some(c))?
                    }
                }
            }
            c => build_writing_cache(env, name, opts, &model_path, c.as_ref())?,
        };

        Session::finish(name, spec, opts, inner, start, from_cache)
    }

    /// Creates the session from bytes in memory (graph and, when present, its external
    /// data), with the same checks as [`Session::create`]. With `model.optimized` the graph
    /// is loaded without re-optimizing. `opts.optimized_model_cache` is ignored here.
    pub fn create_from_memory(
        name: &str,
        spec: &ComponentSpec,
        model: &ModelBytes,
        opts: &SessionOptions,
    ) -> Result<Session> {
        let start = Instant::now();
        let env = super::environment()?;
        if opts.threads == 0 {
            return Err(Error::invalid_argument("threads", "must be >= 1"));
        }
        let level = if model.optimized {
            GraphOptimizationLevel::Disable
        } else {
            GraphOptimizationLevel::All
        };
        let mut b = base_builder(env, name, opts)?
            .with_optimization_level(level)
            .map_err(|e| rt(name, "setting optimization level", e))?;
        if let Some((file, bytes)) = &model.external {
            b = b
                .with_external_initializer_file_in_memory(file, Arc::clone(bytes))
                .map_err(|e| {
                    rt(
                        name,
                        &format!("adding external data `{file}` from memory"),
                        e,
                    )
                })?;
        }
        let inner = b
            .commit_from_memory(&model.graph)
            .map_err(|e| rt(name, "loading the graph from memory", e))?;
        Session::finish(name, spec, opts, inner, start, model.optimized)
    }

    /// Reads a component's files (graph, external data) into memory for
    /// [`Session::create_from_memory`].
    pub fn read_model(bundle_dir: &Path, spec: &ComponentSpec) -> Result<ModelBytes> {
        let graph_entry = spec.files.first().ok_or_else(|| {
            Error::bundle(bundle_dir.join("manifest.json"), "component lists no files")
        })?;
        let graph_path = bundle_dir.join(&graph_entry.path);
        let graph = std::fs::read(&graph_path).map_err(|e| Error::io(&graph_path, e))?;
        let external = match spec.files.get(1) {
            Some(data_entry) => {
                let data_path = bundle_dir.join(&data_entry.path);
                let bytes = std::fs::read(&data_path).map_err(|e| Error::io(&data_path, e))?;
                // The graph names its external data relative to its own folder.
                let graph_dir = Path::new(&graph_entry.path)
                    .parent()
                    .unwrap_or(Path::new(""));
                let rel = Path::new(&data_entry.path)
                    .strip_prefix(graph_dir)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| PathBuf::from(&data_entry.path));
                Some((rel.to_string_lossy().into_owned(), Arc::from(bytes)))
            }
            None => None,
        };
        Ok(ModelBytes {
            graph: Arc::from(graph),
            external,
            optimized: false,
        })
    }

    /// Reads the optimized-model cache that [`Session::create`] wrote for this component and
    /// target under `cache_dir` (a `Bundle` error if there is none yet).
    pub fn read_optimized_cache(
        cache_dir: &Path,
        name: &str,
        spec: &ComponentSpec,
        target: &Target,
    ) -> Result<ModelBytes> {
        let c = cache_paths(cache_dir, name, spec, target);
        if !c.model.is_file() {
            return Err(Error::bundle(
                &c.model,
                format!("no optimized-model cache for component `{name}` yet"),
            ));
        }
        let graph = std::fs::read(&c.model).map_err(|e| Error::io(&c.model, e))?;
        let data = c.dir.join(CACHE_DATA);
        let external = if data.is_file() {
            let bytes = std::fs::read(&data).map_err(|e| Error::io(&data, e))?;
            Some((CACHE_DATA.to_string(), Arc::from(bytes)))
        } else {
            None
        };
        Ok(ModelBytes {
            graph: Arc::from(graph),
            external,
            optimized: true,
        })
    }

    fn finish(
        name: &str,
        spec: &ComponentSpec,
        opts: &SessionOptions,
        inner: ort::session::Session,
        start: Instant,
        from_cache: bool,
    ) -> Result<Session> {
        check_signature(
            name,
            "input",
            &spec.inputs,
            inner.inputs().iter().map(|o| (o.name(), o.dtype())),
        )?;
        check_signature(
            name,
            "output",
            &spec.outputs,
            inner.outputs().iter().map(|o| (o.name(), o.dtype())),
        )?;

        let run_options = if opts.arena_shrinkage {
            let mut ro = RunOptions::new().map_err(|e| rt(name, "creating run options", e))?;
            let devices = match &opts.target {
                Target::Cpu => "cpu:0".to_string(),
                Target::Cuda(c) => format!("cpu:0;gpu:{}", c.device_id),
            };
            ro.set("memory.enable_memory_arena_shrinkage", devices)
                .map_err(|e| rt(name, "enabling arena shrinkage", e))?;
            Some(ro)
        } else {
            None
        };

        let timings = SessionTimings {
            create: start.elapsed(),
            from_optimized_cache: from_cache,
            ..SessionTimings::default()
        };
        tracing::debug!(
            component = name,
            target = opts.target.name(),
            ms = timings.create.as_millis() as u64,
            from_cache,
            "session created"
        );
        Ok(Session {
            name: name.to_string(),
            spec: spec.clone(),
            target: opts.target.clone(),
            inner,
            run_options,
            timings,
        })
    }

    /// The component name (manifest key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest spec this session was checked against.
    pub fn spec(&self) -> &ComponentSpec {
        &self.spec
    }

    /// Where it runs.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Creation and run timings so far.
    pub fn timings(&self) -> SessionTimings {
        self.timings
    }

    /// An f32 tensor of `shape` in the memory this session runs in (the CPU's, or the CUDA
    /// device's), its contents unspecified: state for [`Session::run_in_place`] that stays
    /// where the graph runs.
    pub fn alloc_f32(&self, shape: &[usize]) -> Result<Value> {
        self.alloc(DType::Float32, shape)
    }

    /// A tensor of element type `dtype` and `shape` where this session runs, as
    /// [`Session::alloc_f32`] (an fp16 graph's KV cache is float16).
    pub fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Value> {
        match &self.target {
            Target::Cpu => Value::alloc(dtype, shape),
            Target::Cuda(c) => {
                let info = MemoryInfo::new(
                    AllocationDevice::CUDA,
                    c.device_id,
                    AllocatorType::Device,
                    MemoryType::Default,
                )
                .map_err(|e| rt(&self.name, "describing CUDA memory", e))?;
                let allocator = Allocator::new(&self.inner, info)
                    .map_err(|e| rt(&self.name, "getting the CUDA allocator", e))?;
                alloc_uninit(&allocator, ort_type(dtype), shape)
            }
        }
    }

    /// Runs the graph. Inputs are checked first (every manifest input given exactly once,
    /// dtypes, ranks, fixed dims, and equal sizes for dims sharing a symbolic name); errors
    /// name the tensor. Outputs are owned and outlive the session.
    pub fn run(&mut self, inputs: Vec<(&str, Value)>) -> Result<Outputs> {
        let refs: Vec<(&str, &Value)> = inputs.iter().map(|(n, v)| (*n, v)).collect();
        check_inputs(&self.name, &self.spec, &refs)?;
        drop(refs);
        let input_bytes: u64 = inputs.iter().map(|(_, v)| v.byte_len() as u64).sum();
        let input_count = inputs.len() as u64;
        let start = Instant::now();
        let ort_inputs: Vec<(String, DynValue)> = inputs
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_ort()))
            .collect();
        let outputs = match &self.run_options {
            Some(ro) => self.inner.run_with_options(ort_inputs, ro),
            None => self.inner.run(ort_inputs),
        }
        .map_err(|e| rt(&self.name, "run failed", e))?;
        let values: HashMap<String, Value> = outputs
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from_ort(v)))
            .collect();
        Ok(self.finish_run(start, input_count, input_bytes, values))
    }

    /// Counts a finished run in the timings (and, on a device, its transfers: the inputs
    /// given and the outputs returned) and wraps its outputs.
    fn finish_run(
        &mut self,
        start: Instant,
        input_count: u64,
        input_bytes: u64,
        values: HashMap<String, Value>,
    ) -> Outputs {
        self.timings.runs += 1;
        self.timings.run_total += start.elapsed();
        if matches!(self.target, Target::Cuda(_)) {
            self.timings.transfers += input_count + values.len() as u64;
            self.timings.transfer_bytes +=
                input_bytes + values.values().map(|v| v.byte_len() as u64).sum::<u64>();
        }
        Outputs {
            component: self.name.clone(),
            values,
        }
    }

    /// Runs the graph with `state` bound in place (IoBinding): each state tensor is bound as
    /// its input and as its output, so a graph that writes the output into the input's buffer
    /// (a KV cache updated in place) copies nothing, and the state stays where it is (on the
    /// device for a CUDA target). `inputs` and the state inputs together are checked like
    /// [`Session::run`]'s; every state output must be a manifest output, bound once. The other
    /// outputs are returned, in CPU memory.
    pub fn run_in_place(
        &mut self,
        inputs: Vec<(&str, Value)>,
        state: &mut [StateTensor],
    ) -> Result<Outputs> {
        {
            let mut all: Vec<(&str, &Value)> = inputs.iter().map(|(n, v)| (*n, v)).collect();
            all.extend(state.iter().map(|s| (s.input.as_str(), &s.value)));
            check_inputs(&self.name, &self.spec, &all)?;
        }
        for (i, s) in state.iter().enumerate() {
            if self.spec.output(&s.output).is_none() {
                let names: Vec<&str> = self.spec.outputs.iter().map(|t| t.name.as_str()).collect();
                return Err(Error::model_mismatch(
                    &self.name,
                    format!(
                        "unknown output `{}` (outputs: {})",
                        s.output,
                        names.join(", ")
                    ),
                ));
            }
            if state[..i].iter().any(|o| o.output == s.output) {
                return Err(Error::model_mismatch(
                    &self.name,
                    format!("output `{}` bound twice", s.output),
                ));
            }
        }
        let input_bytes: u64 = inputs.iter().map(|(_, v)| v.byte_len() as u64).sum();
        let input_count = inputs.len() as u64;
        let start = Instant::now();
        let mut binding = self
            .inner
            .create_binding()
            .map_err(|e| rt(&self.name, "creating an IoBinding", e))?;
        for (name, v) in &inputs {
            binding
                .bind_input(*name, v.ort())
                .map_err(|e| rt(&self.name, &format!("binding input `{name}`"), e))?;
        }
        for s in state.iter_mut() {
            binding
                .bind_input(s.input.as_str(), s.value.ort())
                .map_err(|e| rt(&self.name, &format!("binding input `{}`", s.input), e))?;
            binding
                .bind_output(s.output.as_str(), s.value.ort_mut())
                .map_err(|e| rt(&self.name, &format!("binding output `{}`", s.output), e))?;
        }
        let host = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::CPUOutput,
        )
        .map_err(|e| rt(&self.name, "describing CPU memory", e))?;
        for o in &self.spec.outputs {
            if !state.iter().any(|s| s.output == o.name) {
                binding
                    .bind_output_to_device(o.name.as_str(), &host)
                    .map_err(|e| rt(&self.name, &format!("binding output `{}`", o.name), e))?;
            }
        }
        let outputs = match &self.run_options {
            Some(ro) => self.inner.run_binding_with_options(&binding, ro),
            None => self.inner.run_binding(&binding),
        }
        .map_err(|e| rt(&self.name, "run failed", e))?;
        // The state outputs come back as handles to the bound buffers: dropped here.
        let values: HashMap<String, Value> = outputs
            .into_iter()
            .filter(|(k, _)| !state.iter().any(|s| s.output == *k))
            .map(|(k, v)| (k.to_string(), Value::from_ort(v)))
            .collect();
        drop(binding);
        Ok(self.finish_run(start, input_count, input_bytes, values))
    }
}

/// The outputs of one [`Session::run`] or [`Session::run_in_place`], by name.
#[derive(Debug)]
pub struct Outputs {
    component: String,
    values: HashMap<String, Value>,
}

impl Outputs {
    /// Takes output `name` out (each output can be taken once).
    pub fn take(&mut self, name: &str) -> Result<Value> {
        self.values.remove(name).ok_or_else(|| {
            let mut have: Vec<&str> = self.values.keys().map(String::as_str).collect();
            have.sort_unstable();
            Error::model_mismatch(
                &self.component,
                format!(
                    "no output `{name}` (remaining outputs: {})",
                    have.join(", ")
                ),
            )
        })
    }

    /// Borrows output `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Names of the outputs not taken yet.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.values.keys().cloned().collect();
        v.sort_unstable();
        v
    }

    /// Number of outputs not taken yet.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether every output was taken.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// One optimized-model cache entry: a folder holding the graph ONNX Runtime optimized
/// ([`CACHE_MODEL`]) and its external data ([`CACHE_DATA`]: the weights, and on the CPU also
/// the weights as the kernels pre-pack them, which later creations map from the file).
struct CachePaths {
    /// The entry's folder.
    dir: PathBuf,
    /// `dir/CACHE_MODEL`.
    model: PathBuf,
    /// Where this process writes the entry before renaming it to `dir` in one step, so a
    /// reader never sees half an entry and two writers never mix their files.
    tmp_dir: PathBuf,
}

const CACHE_MODEL: &str = "model.onnx";
const CACHE_DATA: &str = "weights.data";

/// Eight hex digits naming the CPU features ONNX Runtime's kernels depend on.
fn cpu_fingerprint() -> String {
    #[allow(unused_mut)]
    let mut features = String::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    features.push_str($f);
                    features.push(',');
                }
            )*};
        }
        probe!(
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx512fp16",
            "avxvnni"
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    features.push_str(std::env::consts::ARCH);
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(features.as_bytes())[..4])
}

/// Cache file names, keyed by the digests of all the component's files (weights can change
/// without the graph file changing), the target and the ONNX Runtime version.
fn cache_paths(dir: &Path, name: &str, spec: &ComponentSpec, target: &Target) -> CachePaths {
    use sha2::Digest;
    let version = super::onnxruntime_version().unwrap_or_default();
    let mut h = sha2::Sha256::new();
    for f in &spec.files {
        h.update(f.sha256.to_ascii_lowercase().as_bytes());
        h.update(b"\n");
    }
    let key = hex::encode(h.finalize());
    let short = &key[..16];
    let tag = match target {
        // Optimized CPU graphs and their pre-packed weights are specific to the instruction
        // set ONNX Runtime picked kernels for (NCHWc layouts, int8 GEMM packing).
        Target::Cpu => format!("cpu{}", cpu_fingerprint()),
        Target::Cuda(c) => format!("cuda{}", c.device_id),
    };
    let stem = format!("{name}-{short}-{tag}-ort{version}");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    CachePaths {
        model: dir.join(&stem).join(CACHE_MODEL),
        tmp_dir: dir.join(format!(".{stem}.tmp{}-{nonce}", std::process::id())),
        dir: dir.join(stem),
    }
}

fn base_builder(
    env: &ort::environment::Environment,
    name: &str,
    opts: &SessionOptions,
) -> Result<SessionBuilder> {
    let mut b = ort::session::Session::builder(env)
        .map_err(|e| rt(name, "creating session builder", e))?
        .with_intra_threads(opts.threads)
        .map_err(|e| rt(name, "setting intra-op threads", e))?
        .with_inter_threads(1)
        .map_err(|e| rt(name, "setting inter-op threads", e))?;
    if let Target::Cuda(c) = &opts.target {
        let available =
            ort::ep::CUDA::is_available().map_err(|e| rt(name, "querying providers", e))?;
        if !available {
            return Err(Error::provider_unavailable(
                "CUDA",
                "the loaded ONNX Runtime has no CUDA execution provider (build with CHATTERBOX_ORT_FLAVOR=cuda \
                 or point ORT_DYLIB_PATH at onnxruntime-gpu)",
            ));
        }
        let mut ep = ort::ep::CUDA::default()
            .with_device_id(c.device_id)
            .with_arena_extend_strategy(if c.arena_same_as_requested {
                ArenaExtendStrategy::SameAsRequested
            } else {
                ArenaExtendStrategy::NextPowerOfTwo
            })
            .with_conv_algorithm_search(match c.conv_algo_search {
                ConvAlgoSearch::Heuristic => ort::ep::cuda::ConvAlgorithmSearch::Heuristic,
                ConvAlgoSearch::Exhaustive => ort::ep::cuda::ConvAlgorithmSearch::Exhaustive,
                ConvAlgoSearch::Default => ort::ep::cuda::ConvAlgorithmSearch::Default,
            });
        if let Some(limit) = c.gpu_mem_limit {
            ep = ep.with_memory_limit(limit);
        }
        b = b
            .with_execution_providers([ep.build().error_on_failure()])
            .map_err(|e| Error::provider_unavailable("CUDA", format!("component `{name}`: {e}")))?;
        if c.device_allocator_for_initializers {
            b = b
                .with_config_entry("session.use_device_allocator_for_initializers", "1")
                .map_err(|e| rt(name, "setting use_device_allocator_for_initializers", e))?;
        }
    }
    Ok(b)
}

fn build_writing_cache(
    env: &ort::environment::Environment,
    name: &str,
    opts: &SessionOptions,
    model_path: &Path,
    cache: Option<&CachePaths>,
) -> Result<ort::session::Session> {
    let optimizing = || -> Result<SessionBuilder> {
        base_builder(env, name, opts)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| rt(name, "setting optimization level", e))
    };
    let load = |mut b: SessionBuilder| -> Result<ort::session::Session> {
        b.commit_from_file(model_path)
            .map_err(|e| rt(name, &format!("loading `{}`", model_path.display()), e))
    };
    let plain = || load(optimizing()?);
    let Some(c) = cache else {
        return plain();
    };
    // A cache that cannot be written (read-only folder, full disk) costs speed, not the
    // session: build it without the cache then.
    let written = std::fs::create_dir_all(&c.tmp_dir)
        .map_err(|e| Error::io(&c.tmp_dir, e))
        .and_then(|()| {
            let mut b = optimizing()?
                .with_optimized_model_path(c.tmp_dir.join(CACHE_MODEL))
                .map_err(|e| rt(name, "setting optimized model path", e))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_file_name",
                    CACHE_DATA,
                )
                .map_err(|e| rt(name, "setting optimized external data file", e))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_min_size_in_bytes",
                    "1024",
                )
                .map_err(|e| rt(name, "setting optimized external data threshold", e))?;
            if opts.target == Target::Cpu {
                // The weights as the CPU kernels pre-pack them go into the data file too;
                // later creations map them from the page cache instead of allocating and
                // faulting in fresh memory.
                b = b
                    .with_config_entry("session.save_external_prepacked_constant_initializers", "1")
                    .map_err(|e| rt(name, "setting pre-packed weight saving", e))?;
            }
            load(b)
        });
    match written {
        Ok(session) => {
            if c.tmp_dir.join(CACHE_MODEL).is_file() {
                // Another process may have stored the same entry meanwhile: keep theirs.
                if std::fs::rename(&c.tmp_dir, &c.dir).is_err() && !c.model.is_file() {
                    tracing::warn!(component = name, cache = %c.dir.display(), "could not store optimized-model cache");
                }
            }
            let _ = std::fs::remove_dir_all(&c.tmp_dir);
            Ok(session)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&c.tmp_dir);
            // A graph that cannot be loaded fails again here, with its own error and no
            // word about the cache; only a cache that failed alone is worth a warning.
            let session = plain()?;
            tracing::warn!(component = name, cache = %c.dir.display(), error = %e,
                "could not write the optimized-model cache; created the session without it");
            Ok(session)
        }
    }
}

/// One concrete dim of a graph's tensor: `None` = dynamic.
fn graph_dims(shape: &[i64]) -> Vec<Option<i64>> {
    shape
        .iter()
        .map(|&d| if d < 0 { None } else { Some(d) })
        .collect()
}

fn fmt_graph(ty: &str, dims: &[Option<i64>], symbols: &[String]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Some(n) => n.to_string(),
            None => match symbols.get(i) {
                Some(s) if !s.is_empty() => format!("\"{s}\""),
                _ => "?".to_string(),
            },
        })
        .collect();
    format!("{ty} [{}]", parts.join(", "))
}

/// Compares a session's real inputs or outputs with the manifest: same names, dtypes and
/// ranks; a dim fixed on both sides must agree; an input dim the manifest calls dynamic
/// must be dynamic in the graph.
fn check_signature<'a>(
    component: &str,
    kind: &str,
    expected: &[TensorSpec],
    actual: impl Iterator<Item = (&'a str, &'a ValueType)>,
) -> Result<()> {
    let actual: Vec<(&str, &ValueType)> = actual.collect();
    for spec in expected {
        let Some((_, vt)) = actual.iter().find(|(n, _)| *n == spec.name) else {
            let names: Vec<&str> = actual.iter().map(|(n, _)| *n).collect();
            return Err(Error::model_mismatch(
                component,
                format!(
                    "{kind} `{}` is in the manifest but not in the graph (graph {kind}s: {})",
                    spec.name,
                    names.join(", ")
                ),
            ));
        };
        let ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } = vt
        else {
            return Err(Error::model_mismatch(
                component,
                format!("{kind} `{}`: graph has a non-tensor type {vt:?}", spec.name),
            ));
        };
        let dims = graph_dims(shape);
        let symbols: Vec<String> = dimension_symbols.iter().map(|s| s.to_string()).collect();
        let graph_desc = fmt_graph(&format!("{ty}"), &dims, &symbols);
        let manifest_desc = format!("{} {}", spec.dtype, DimsDisplay(&spec.shape));
        let mismatch = |what: &str| {
            Error::model_mismatch(
                component,
                format!(
                    "{kind} `{}`: {what}: manifest {manifest_desc}, graph {graph_desc}",
                    spec.name
                ),
            )
        };
        if dtype_from_ort(*ty) != Some(spec.dtype) {
            return Err(mismatch("dtype differs"));
        }
        if dims.len() != spec.shape.len() {
            return Err(mismatch("rank differs"));
        }
        for (i, (g, m)) in dims.iter().zip(&spec.shape).enumerate() {
            match (g, m) {
                (Some(g), Dim::Fixed(m)) if *g as u64 != *m => {
                    return Err(mismatch(&format!("dim {i} differs")));
                }
                // An input fixed in the graph but dynamic in the manifest would reject the
                // sizes the engine passes; an output that shape inference made static is fine.
                (Some(_), Dim::Symbolic(_)) if kind == "input" => {
                    return Err(mismatch(&format!(
                        "dim {i} is fixed in the graph but dynamic in the manifest"
                    )));
                }
                _ => {}
            }
        }
    }
    for (n, _) in &actual {
        if !expected.iter().any(|s| s.name == *n) {
            return Err(Error::model_mismatch(
                component,
                format!("graph {kind} `{n}` is not in the manifest"),
            ));
        }
    }
    Ok(())
}

/// Validates run inputs against the manifest before handing them to ONNX Runtime.
fn check_inputs(component: &str, spec: &ComponentSpec, inputs: &[(&str, &Value)]) -> Result<()> {
    let mut symbols: HashMap<&str, (usize, &str)> = HashMap::new();
    for (i, (name, value)) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|(n, _)| n == name) {
            return Err(Error::model_mismatch(
                component,
                format!("input `{name}` given twice"),
            ));
        }
        let Some(ts) = spec.input(name) else {
            let names: Vec<&str> = spec.inputs.iter().map(|t| t.name.as_str()).collect();
            return Err(Error::model_mismatch(
                component,
                format!("unknown input `{name}` (inputs: {})", names.join(", ")),
            ));
        };
        let shape = value.shape();
        let got = || format!("{} {shape:?}", value.dtype_name());
        if value.dtype() != Some(ts.dtype) {
            return Err(Error::model_mismatch(
                component,
                format!("input `{name}`: dtype {}, expected {}", got(), ts),
            ));
        }
        if shape.len() != ts.shape.len() {
            return Err(Error::model_mismatch(
                component,
                format!(
                    "input `{name}`: rank {} ({}), expected {}",
                    shape.len(),
                    got(),
                    ts
                ),
            ));
        }
        for (d, (&size, dim)) in shape.iter().zip(&ts.shape).enumerate() {
            match dim {
                Dim::Fixed(n) if size as u64 != *n => {
                    return Err(Error::model_mismatch(
                        component,
                        format!(
                            "input `{name}`: dim {d} is {size}, expected {n} ({} vs {})",
                            got(),
                            ts
                        ),
                    ));
                }
                Dim::Symbolic(sym) => match symbols.get(sym.as_str()) {
                    Some(&(other, other_name)) if other != size => {
                        return Err(Error::model_mismatch(
                            component,
                            format!(
                                "input `{name}`: dim {d} (\"{sym}\") is {size} but input `{other_name}` has \"{sym}\" = {other}"
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        symbols.insert(sym.as_str(), (size, name));
                    }
                },
                _ => {}
            }
        }
    }
    if let Some(missing) = spec
        .inputs
        .iter()
        .find(|t| !inputs.iter().any(|(n, _)| *n == t.name))
    {
        return Err(Error::model_mismatch(
            component,
            format!("missing input `{}` ({missing})", missing.name),
        ));
    }
    Ok(())
}
