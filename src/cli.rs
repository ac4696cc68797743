//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// cedm: label-free, cluster-conditioned diffusion (C-EDM) experiments as a content-addressed
/// dataflow graph. Every node's result is cached by a key over its kind, params and inputs, so
/// a sweep over the number of clusters recomputes only what changed.
#[derive(Parser, Debug)]
#[command(name = "cedm", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Artifact cache directory [default: `.cedm/` beside the experiment file].
    #[arg(long, global = true, env = "CEDM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an experiment: compute every node that is not cached.
    Run(RunArgs),
    /// Say, for every node and sweep point, whether it is cached, will run (and why), or waits.
    Status(StatusArgs),
    /// Print the expanded graph of an experiment.
    Dag(DagArgs),
    /// Live curves of an experiment's running nodes (loss, lr, img/s, … from the scalar
    /// streams training kinds write into the cache), redrawn every few seconds.
    Watch(WatchArgs),
    /// Write a static HTML report of an experiment's cached results: FID against C, cluster
    /// statistics, training curves, sample grids (no server; opens from disk).
    Report(ReportArgs),
    /// Inspect and maintain the artifact cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Experiment tables from the cache (one row per model and sweep point, metrics as
    /// columns), and why two instances have different keys.
    #[command(subcommand)]
    Exp(ExpCommand),
    /// List node kinds, or show one kind's inputs and params.
    Kinds(KindsArgs),
    /// Extract backbone features of a folder, zip or dataset file (like dgm-eval), outside any
    /// experiment.
    Features(FeaturesArgs),
    /// Fréchet distance between two image sets or statistics files, like pytorch-fid: FID
    /// (Inception pool3) or FDD (DINOv2 ViT-L/14). With --save-stats, write the statistics of
    /// the first path to the second instead.
    Fid(FidArgs),
    /// Sample-quality metrics between two sets, like torch-fidelity / dgm-eval: A (generated) and
    /// B (reference) are image folders/zips/dataset files, feature files (.npy / .safetensors
    /// [N, D]) or, for Fréchet distances, statistics files; text table, or --json.
    Eval(EvalArgs),
    /// Benchmarks: cedm's kernels against PyTorch / scikit-learn / SciPy on the same input.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script: `cedm completions bash > ~/.local/share/bash-completion/completions/cedm`
    /// (zsh: a file `_cedm` on `$fpath`; fish: `~/.config/fish/completions/cedm.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Compute one node by its key (what a batch job runs; the task file must be in the cache).
    #[command(hide = true)]
    Exec(ExecArgs),
}

/// `cedm features`.
#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// `mobilenet_v2`, or a ViT preset (`dino_vitb16`, `dinov2_vitl14`, …).
    pub model: String,
    /// A folder or .zip of PNG/JPEG, an images.safetensors, or an IDX file.
    pub input: PathBuf,
    /// Checkpoint file.
    #[arg(long)]
    pub weights: PathBuf,
    /// Output safetensors file (tensor `features`, float32 [N, D]).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Input side after resizing [default: 224].
    #[arg(long, default_value_t = 224)]
    pub resolution: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: cedm_engine::DeviceSpec,
}

/// `cedm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The generated set: images (a folder or .zip of PNG/JPEG, an images.safetensors, an IDX
    /// file), features (.npy or .safetensors with `features` [N, D]) or statistics (.npz,
    /// stats.safetensors; Fréchet distances only).
    pub a: PathBuf,
    /// The reference set, the same kinds of input.
    pub b: PathBuf,
    /// Comma list: `fid`, `fdd` (= fd:dinov2_vitl14), `fd:ENCODER`, `kid[:ENCODER]`,
    /// `prdc[:ENCODER]` (precision/recall k 3, density/coverage k 5). ENCODER: `inception`
    /// (the default of kid and prdc), `mobilenet_v2`, a ViT preset, or `clip` (OpenCLIP
    /// ViT-L-14) / `clip:MODEL` (another OpenCLIP preset; weights by `--weights clip=PATH`).
    #[arg(long, short, default_value = "fid")]
    pub metrics: String,
    /// Encoder weights, `ENCODER=PATH`, repeatable [defaults: inception and mobilenet_v2 from
    /// `$CEDM_ASSETS/weights`, `./assets/weights` or the assets beside the binary].
    #[arg(long, value_name = "ENCODER=PATH")]
    pub weights: Vec<String>,
    /// The architecture of a `custom` encoder (`custom` for a ViT, `clip:custom` for CLIP),
    /// `ENCODER=FILE.json`: the JSON form of the `arch` param of features/vit or features/clip.
    #[arg(long, value_name = "ENCODER=FILE")]
    pub arch: Vec<String>,
    /// Bootstrap resamples of A for the interval of the Fréchet distances and KID (0: none).
    #[arg(long, default_value_t = 100)]
    pub bootstrap: usize,
    /// Level of the interval.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// KID subsets (torch-fidelity's default).
    #[arg(long, default_value_t = 100)]
    pub kid_subsets: usize,
    /// KID subset size (torch-fidelity's default; both sets need at least this many).
    #[arg(long, default_value_t = 1000)]
    pub kid_subset_size: usize,
    /// Seed of the bootstrap resamples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N items of each input.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// MobileNetV2 input side.
    #[arg(long, default_value_t = 224)]
    pub resolution: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: cedm_engine::DeviceSpec,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which Fréchet distance.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FidMetric {
    /// Inception pool3 (2048-d), the TF inception-2015-12-05 network.
    Fid,
    /// DINOv2 ViT-L/14 CLS (1024-d), dgm-eval's FD_DINOv2.
    Fdd,
}

/// `cedm fid`.
#[derive(Args, Debug)]
pub struct FidArgs {
    /// Images (a folder or .zip of PNG/JPEG, an images.safetensors, an IDX file) or a statistics
    /// file (.npz with mu/sigma, or stats.safetensors).
    pub path_a: PathBuf,
    /// The same kinds of input; with --save-stats, the output file (.npz or .safetensors).
    pub path_b: PathBuf,
    /// Write the statistics of PATH_A to PATH_B instead of computing a distance.
    #[arg(long)]
    pub save_stats: bool,
    /// Which distance.
    #[arg(long, value_enum, default_value_t = FidMetric::Fid)]
    pub metric: FidMetric,
    /// Encoder weights [default for fid: assets/weights/inception-2015-12-05.safetensors; fdd: required].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// FDD encoder preset.
    #[arg(long, default_value = "dinov2_vitl14")]
    pub model: String,
    /// Use only the first N images of each image input.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: cedm_engine::DeviceSpec,
    /// Inception features for --metric fid, as pytorch-fid's `--dims`: 2048 (pool3, the FID
    /// everyone reports), or 64 / 192 / 768 (after the first max-pool, the second max-pool, and
    /// Mixed_6e, averaged over space). Distances at different dims are not comparable.
    #[arg(long, default_value_t = 2048, value_parser = parse_fid_dims)]
    pub dims: usize,
    /// Print JSON (`{"metric": "FID", "value": …, "n_a": …, "n_b": …, "dims": …}`; a count is
    /// null for a statistics file that records none).
    #[arg(long)]
    pub json: bool,
}

fn parse_fid_dims(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(d @ (64 | 192 | 768 | 2048)) => Ok(d),
        _ => Err("expected 64, 192, 768 or 2048 (pytorch-fid's Inception blocks)".into()),
    }
}

/// `cedm bench …`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// MobileNetV2 feature extraction throughput (reference: benches/mobilenet_v2.py).
    Features {
        /// torchvision's mobilenet_v2-b0353104.pth.
        #[arg(long, default_value = "assets/weights/mobilenet_v2-b0353104.pth")]
        weights: PathBuf,
        /// Images to time.
        #[arg(long, default_value_t = 1024)]
        images: usize,
        /// Input side.
        #[arg(long, default_value_t = 96)]
        resolution: usize,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// Throughput of a transformer encoder — a ViT preset (DINOv2 ViT-L/14 for FD_DINOv2, DINO
    /// ViT-B/16, …) or OpenCLIP's image tower (`clip:ViT-B-32`) — against timm / open_clip on
    /// the same architecture (reference: benches/encoder.py). Without `--weights` both sides
    /// use random weights (same arithmetic; CLIP's are exported by the reference script, so
    /// CLIP needs `--python` or `--weights`).
    Encoder {
        /// A ViT preset, or clip:MODEL.
        #[arg(long, default_value = "dinov2_vitl14")]
        model: String,
        /// The official checkpoint [default: random weights].
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Images to time.
        #[arg(long, default_value_t = 32)]
        images: usize,
        /// Batch size.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Input side (ViTs; CLIP uses its own): 224, as dgm-eval feeds DINOv2.
        #[arg(long, default_value_t = 224)]
        resolution: usize,
        /// cedm's device: cpu, wgpu[:N], cuda[:N].
        #[arg(long, default_value = "cpu")]
        device: cedm_engine::DeviceSpec,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// FID Inception throughput (reference: benches/inception.py running the TorchScript).
    Inception {
        /// The converted network.
        #[arg(
            long,
            default_value = "assets/weights/inception-2015-12-05.safetensors"
        )]
        weights: PathBuf,
        /// The original TorchScript, for the reference [default: WEIGHTS with .pt].
        #[arg(long)]
        torchscript: Option<PathBuf>,
        /// Images to time.
        #[arg(long, default_value_t = 128)]
        images: usize,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// One EDM training step (SongUNet forward/backward, EDM loss, Adam) in img/s, against
    /// PyTorch on the same config (reference: benches/songunet.py).
    Edm {
        /// Network preset: cifar (EDM's CIFAR-10 DDPM++, 55.7 M parameters), ffhq64, small,
        /// quickstart (the quickstart's 16 px EDM).
        #[arg(long, default_value = "cifar")]
        preset: String,
        /// Label dimension (clusters).
        #[arg(long, default_value_t = 10)]
        label_dim: usize,
        /// Images per step.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed steps first (shader compilation and autotuning on GPUs).
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// cedm's device: cpu, wgpu[:N], cuda[:N].
        #[arg(long, default_value = "cpu")]
        device: cedm_engine::DeviceSpec,
        /// fp32, or fp16 (mixed precision on both sides).
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// PyTorch's device: cpu, cuda.
        #[arg(long, default_value = "cpu")]
        torch_device: String,
        /// Also show where each side's time goes (a second, profiled run of --steps: cedm's
        /// custom CPU operations, PyTorch's profiler by operator).
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// Sampling with EDM's Heun sampler (deterministic, 2·steps − 1 network evaluations per
    /// image) against EDM's `edm_sampler` loop in PyTorch on the same network (reference:
    /// benches/sample.py).
    Sample {
        /// Network preset: cifar, ffhq64, small, quickstart.
        #[arg(long, default_value = "quickstart")]
        preset: String,
        /// Label dimension (clusters).
        #[arg(long, default_value_t = 10)]
        label_dim: usize,
        /// Images to generate.
        #[arg(long, default_value_t = 256)]
        images: usize,
        /// Images per network call.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Heun steps.
        #[arg(long, default_value_t = 18)]
        steps: usize,
        /// Also show where cedm's time goes (a second, profiled run).
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// A TEMI epoch (all heads, student and teacher, loss, AdamW, EMA) against the same heads in
    /// PyTorch (reference: benches/temi.py).
    Temi {
        /// Heads.
        #[arg(long, default_value_t = 50)]
        heads: usize,
        /// Pairs per step.
        #[arg(long, default_value_t = 512)]
        batch: usize,
        /// Feature dimension.
        #[arg(long, default_value_t = 1280)]
        dim: usize,
        /// Clusters.
        #[arg(long, default_value_t = 100)]
        clusters: usize,
        /// Items per epoch.
        #[arg(long, default_value_t = 60000)]
        items: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// Fréchet distance at 2048-d against scipy.linalg.sqrtm (reference: benches/frechet.py).
    Frechet {
        /// Dimension.
        #[arg(long, default_value_t = 2048)]
        d: usize,
        /// Samples behind each covariance.
        #[arg(long, default_value_t = 10000)]
        n: usize,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// Exact kNN on random features (reference: benches/knn.py).
    Knn {
        /// Items.
        #[arg(long, default_value_t = 60000)]
        n: usize,
        /// Dimension.
        #[arg(long, default_value_t = 1280)]
        d: usize,
        /// Neighbours.
        #[arg(long, default_value_t = 50)]
        k: usize,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
    /// k-means against scikit-learn (reference: benches/kmeans.py).
    Kmeans {
        /// A features.safetensors to cluster [default: random Gaussian n × d].
        #[arg(long)]
        features: Option<PathBuf>,
        /// Points (random features).
        #[arg(long, default_value_t = 60000)]
        n: usize,
        /// Dimension (random features).
        #[arg(long, default_value_t = 1280)]
        d: usize,
        /// Clusters.
        #[arg(long, default_value_t = 100)]
        k: usize,
        /// Initialisations.
        #[arg(long, default_value_t = 1)]
        n_init: usize,
        /// Iteration cap.
        #[arg(long, default_value_t = 300)]
        max_iter: usize,
        #[command(flatten)]
        reference: ReferenceArgs,
    },
}

/// The reference side of a benchmark.
#[derive(Args, Debug)]
pub struct ReferenceArgs {
    /// A Python with torch / sklearn / scipy to run the reference script on the same input.
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How progress is shown.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print one JSON event per line instead of progress bars.
    #[arg(long)]
    pub json: bool,
    /// Print every line nodes log.
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
    /// No progress: only failures while running, then the final line and the summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Command-line overrides of the experiment file (Hydra / `dvc exp run -S` style).
#[derive(Args, Debug, Clone, Default)]
pub struct OverrideArgs {
    /// Override a value as if written in the file, repeatable: a sweep variable (`C=80` sweeps
    /// C over [80]; `C=[10,20]`), a variable (`n=2000`), a node field (`temi.params.gamma=1`),
    /// or a full path (`vars.n=2000`, `nodes.temi.params.heads=4`). The value is YAML.
    #[arg(long = "set", short = 'S', value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Sweep over comma-separated values, repeatable (several make a grid): `C=10,20,40`, a
    /// variable (`n=1000,2000` becomes a sweep variable), or a node field
    /// (`temi.params.gamma=0.5,1`: a new sweep variable `gamma`).
    #[arg(long = "multirun", short = 'm', value_name = "PATH=V1,V2,…")]
    pub multi: Vec<String>,
}

impl OverrideArgs {
    /// The overrides in command-line order: every `-S`, then every `-m` (a later one wins).
    pub fn parsed(&self) -> Result<Vec<cedm_engine::overrides::Override>, String> {
        use cedm_engine::overrides::Override;
        let set = self.set.iter().map(|a| Override::parse(a, false));
        let multi = self.multi.iter().map(|a| Override::parse(a, true));
        set.chain(multi).collect()
    }
}

/// `cedm run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Experiment YAML file.
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Run only these nodes (ids or labels like `temi[C=10]`) and what they need.
    #[arg(long, value_name = "NODE", num_args = 1..)]
    pub only: Vec<String>,
    /// Recompute these nodes even if cached.
    #[arg(long, value_name = "NODE", num_args = 1..)]
    pub force: Vec<String>,
    /// Most nodes running at once [default: 2 locally, 100 with --executor slurm or ray].
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where nodes run: in this process, or as Slurm or Ray jobs (`cedm exec KEY` on the
    /// cluster's nodes, the cache on a shared filesystem).
    #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    #[command(flatten)]
    pub slurm: SlurmArgs,
    #[command(flatten)]
    pub ray: RayArgs,
    /// Device for nodes that use one: cpu, wgpu[:N], cuda[:N] [default: the YAML's `device`, else cpu].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<cedm_engine::DeviceSpec>,
    /// GPU slots of this machine for a local run on a GPU device: device numbers (`0,1,2,3`).
    /// Each GPU node runs on one slot as that device; trainings hold a slot alone [default:
    /// the device's own number].
    #[arg(long, value_name = "LIST", value_parser = parse_gpus)]
    pub gpus: Option<GpuList>,
    /// Memory of each GPU (`80G`): lets nodes whose device memory is known (features,
    /// sampling, metrics, TEMI heads; the last run's measured peak, or the YAML's
    /// `resources: {gpu_mem: …}`) share a slot while their needs fit.
    #[arg(long, value_name = "SIZE", value_parser = parse_gpu_mem)]
    pub gpu_mem: Option<u64>,
    /// Show what would run, and why, without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Before running, fetch from the remote cache every result the experiment needs that it
    /// has (read-through; `--remote` or CEDM_REMOTE).
    #[arg(long, conflicts_with = "dry_run")]
    pub pull: bool,
    #[command(flatten)]
    pub remote: RemoteArg,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Device numbers of `--gpus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuList(pub Vec<usize>);

fn parse_gpus(s: &str) -> Result<GpuList, String> {
    let mut v = Vec::new();
    for part in s.trim().split(',') {
        let i: usize = part
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: expected device numbers such as 0,1,2,3"))?;
        if v.contains(&i) {
            return Err(format!("`{s}`: device {i} is listed twice"));
        }
        v.push(i);
    }
    if v.len() > 1024 {
        return Err(format!("`{s}`: at most 1024 devices"));
    }
    Ok(GpuList(v))
}

fn parse_gpu_mem(s: &str) -> Result<u64, String> {
    cedm_engine::gpu::parse_mem_mb(s)
}

/// Executors.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Threads of this process.
    Local,
    /// One `sbatch` job per node (job arrays for a sweep's fan-out).
    Slurm,
    /// One Ray job per node, through the Ray Jobs REST API of the head's dashboard.
    Ray,
}

/// Options of `--executor ray`.
#[derive(Args, Debug, Clone)]
pub struct RayArgs {
    /// The Ray dashboard (Jobs API) address.
    #[arg(
        long,
        env = "RAY_API_SERVER_ADDRESS",
        default_value = "http://127.0.0.1:8265",
        value_name = "URL"
    )]
    pub ray_address: String,
    /// A runtime environment for every job, as JSON (`{"env_vars": {"OMP_NUM_THREADS": "8"}}`).
    #[arg(long, value_name = "JSON")]
    pub ray_runtime_env: Option<String>,
}

/// Options of `--executor slurm`.
#[derive(Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Slurm partition (a node's `resources: {partition}` wins).
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Slurm account.
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// Slurm QOS.
    #[arg(long, value_name = "Q")]
    pub qos: Option<String>,
    /// Extra sbatch argument, verbatim (repeatable), e.g. `--sbatch-arg=--exclusive`.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Seconds between squeue polls (Slurm) or job status polls (Ray).
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub poll_seconds: f64,
    /// Seconds before the time limit at which jobs are told to checkpoint (SIGUSR2).
    #[arg(long, default_value_t = 120, value_name = "S")]
    pub signal_seconds: u32,
    /// Resubmissions of a job stopped at the time-limit warning (Slurm) or that checkpointed
    /// and stopped (Ray).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_resubmits: u32,
    /// Most array tasks of one submission running at once (`--array=…%P`); 0 = no limit.
    #[arg(long, default_value_t = 0, value_name = "P")]
    pub array_parallel: usize,
}

/// `cedm report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Experiment YAML file.
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Output directory [default: `report-<name>/` beside the experiment file] (html only).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// `html` (a page with figures, written to the output directory) or `markdown` (the
    /// results tables on stdout, from the cache alone: what docs/results.md includes).
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
}

/// `cedm report` formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Static HTML page with figures.
    Html,
    /// Markdown tables on stdout.
    Markdown,
}

/// `cedm status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Experiment YAML file.
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// List only what is not cached (will run, waits, missing files); the totals line still
    /// counts everything.
    #[arg(long)]
    pub changed: bool,
}

/// Graph formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DagFormat {
    /// Indented text.
    Text,
    /// JSON: one object per instance (label, node, kind, vars, params, inputs by slot).
    Json,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// `cedm dag`.
#[derive(Args, Debug)]
pub struct DagArgs {
    /// Experiment YAML file.
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DagFormat::Text)]
    pub format: DagFormat,
}

/// `cedm watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Experiment YAML file.
    pub file: PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Seconds between looks.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub interval: f64,
    /// Look once and exit.
    #[arg(long)]
    pub once: bool,
    /// Points per curve.
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub width: usize,
    /// Also write every stream as TensorBoard event files below DIR, one run directory per node
    /// (`tensorboard --logdir DIR`), appending as the streams grow.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<std::path::PathBuf>,
}

/// `cedm exp …`.
#[derive(Subcommand, Debug)]
pub enum ExpCommand {
    /// One row per sampled model (label source, sweep point), its metrics as columns, from the
    /// cache alone; several files make one table with an `experiment` column.
    Show(ExpShowArgs),
    /// Why two instances (labels of one experiment, or of two with --to) have different keys:
    /// params, files, kind versions, and recursively the inputs that differ.
    Diff {
        /// Experiment file.
        file: PathBuf,
        /// An instance label (`edm_temi[C=10]`) or node id.
        a: String,
        /// The other instance.
        b: String,
        /// B is an instance of this experiment instead.
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
}

/// `cedm exp show`.
#[derive(Args, Debug)]
pub struct ExpShowArgs {
    /// Experiment files.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExpFormat::Table)]
    pub format: ExpFormat,
    /// Keep rows where COLUMN=VALUE (text or number), COLUMN<NUMBER or COLUMN>NUMBER;
    /// repeatable (all must hold). Column names as shown, any case.
    #[arg(long = "where", short = 'w', value_name = "TEST")]
    pub filter: Vec<String>,
    /// Sort by a column (`--sort FID`); `--sort=-FID` descending; n/a last.
    #[arg(long, value_name = "COLUMN", allow_hyphen_values = true)]
    pub sort: Option<String>,
}

/// `cedm exp show` formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpFormat {
    /// Aligned text.
    Table,
    /// CSV (numbers at full precision, n/a empty).
    Csv,
    /// A Markdown table.
    Md,
    /// JSON: one object per row (n/a as null).
    Json,
}

/// Where the remote cache is.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArg {
    /// Remote cache URL, `s3://BUCKET/PREFIX` (credentials, region and an S3-compatible
    /// endpoint from the AWS_* variables, docs/cache.md).
    #[arg(long = "remote", env = "CEDM_REMOTE", value_name = "URL")]
    pub url: Option<String>,
}

/// The experiment a `cedm cache` command is about: `FILE` last on the line, or `-e FILE`.
#[derive(Args, Debug, Clone, Default)]
pub struct ExperimentArg {
    /// Experiment file: names nodes by id or label and selects its cache (`.cedm/` beside it).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The experiment file, as an option (the same as FILE).
    #[arg(long, short = 'e', value_name = "FILE", conflicts_with = "file")]
    pub experiment: Option<PathBuf>,
}

impl ExperimentArg {
    /// The file, however it was given.
    pub fn get(&self) -> Option<&std::path::Path> {
        self.file.as_deref().or(self.experiment.as_deref())
    }
}

/// `cedm cache …`. Every subcommand takes the experiment the same way (`FILE` last, or
/// `-e FILE`) and none creates a cache.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List cached results (of one experiment, when given).
    Ls {
        #[command(flatten)]
        experiment: ExperimentArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a result: params, inputs, outputs with sizes and digests, timings, log, lineage.
    Show {
        /// A key (or unique prefix), or a node id / label of the experiment.
        name: String,
        #[command(flatten)]
        experiment: ExperimentArg,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rehash every object and check every record; corrupt objects are quarantined.
    Verify {
        #[command(flatten)]
        experiment: ExperimentArg,
    },
    /// Delete unreferenced objects and leftovers of killed runs; with --keep, also every result
    /// the given experiments do not use.
    Gc {
        /// Keep only what these experiments use.
        #[arg(long, value_name = "FILE", num_args = 1..)]
        keep: Vec<PathBuf>,
        /// Show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Upload cached results (the experiment's and their lineage, or every record) with their
    /// objects to the remote cache; objects first, records last.
    Push {
        #[command(flatten)]
        experiment: ExperimentArg,
        #[command(flatten)]
        remote: RemoteArg,
    },
    /// Fetch results from the remote cache (what the experiment needs, or every record), each
    /// object checked against its blake3 digest before it is written.
    Pull {
        #[command(flatten)]
        experiment: ExperimentArg,
        #[command(flatten)]
        remote: RemoteArg,
    },
    /// Copy a result's output files (and record.json) into a directory.
    Export {
        /// A key (or unique prefix), or a node id / label.
        name: String,
        /// Destination directory.
        dir: PathBuf,
        #[command(flatten)]
        experiment: ExperimentArg,
    },
}

/// `cedm kinds`.
#[derive(Args, Debug)]
pub struct KindsArgs {
    /// A kind to describe.
    pub kind: Option<String>,
    /// Print the node reference as Markdown (docs/nodes.md).
    #[arg(long)]
    pub markdown: bool,
    /// Print JSON: every kind (or the one named) with its version, inputs and params (type,
    /// default, required, meaning).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
}

/// `cedm exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The key to compute.
    pub key: String,
    /// Write the exit code here when done (what the Slurm executor polls for).
    #[arg(long, value_name = "FILE")]
    pub exit_code_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}
