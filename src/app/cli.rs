//! Command-line interface: subcommands and flags only (clap derive). Validation lives with the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::data::decode::Interpolation;
use crate::data::preprocess::PreprocessMode;
use crate::model::weights::DEFAULT_MODEL;

/// Where `catdog data fetch` writes Dogs-vs-Cats and `catdog finetune` looks for it.
pub const DEFAULT_DATA: &str = crate::data::fetch::DEFAULT_FOLDER;

/// The ids of the flags the user gave on the command line in the subcommand (`lr`, `batch_size`, …), not those
/// left at their defaults: `--resume` refuses the ones that would change the saved configuration.
pub fn explicit_flags(matches: &clap::ArgMatches) -> Vec<String> {
    let Some((_, sub)) = matches.subcommand() else {
        return Vec::new();
    };
    sub.ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
}

#[derive(Debug, Parser)]
#[command(
    name = "catdog",
    version,
    about = "VGG16 transfer learning (feature extraction, block5 fine-tuning) on image folders, and regularization labs",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Silence progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Worker threads for decoding and the convolution [default: all cores].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// How progress shows: auto (a bar on a terminal; plain lines in Jupyter, Colab, Kaggle, on a dumb terminal
    /// or where stderr is not a terminal), bar, lines or off [default: $CATDOG_PROGRESS, else auto].
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_progress)]
    pub progress: Option<crate::progress::ProgressMode>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get or look at conv-base weights.
    #[command(subcommand)]
    Weights(WeightsCmd),
    /// Run the conv base over images and save a layer's output (the "fast feature extraction" recipe).
    Extract(ExtractArgs),
    /// Train on an image folder. By default feature extraction (the conv base frozen, only the new head trains);
    /// --mode finetune also trains the layers from --unfreeze-from (block5_conv1) on.
    Finetune(Box<FinetuneArgs>),
    /// Run the course's recipes on one data set — (a) feature extraction, (b) with augmentation, (c) block5
    /// fine-tuning from a fresh head, (d) block5 fine-tuning from (a)'s head — evaluate each on the test folder and
    /// write report.md, report.json and report.png under --out; a re-run skips finished recipes.
    Course(CourseArgs),
    /// Find a learning rate as fastai's lr_find does: an exponential sweep over --iters steps on finetune's data and
    /// model (nothing is saved), the valley and steepest-fall suggestions printed and marked on a plot.
    LrFind(Box<LrFindArgs>),
    /// Evaluate a checkpoint on a labelled folder: loss, accuracy, confusion matrix, P/R/F1, ROC-AUC.
    Evaluate(EvaluateArgs),
    /// Predict the class of images with a checkpoint.
    Predict(PredictArgs),
    /// What the model looked at: Grad-CAM maps of images at a conv layer, as overlays (PNG) or JSON.
    Explain(ExplainArgs),
    /// Write a checkpoint as one ONNX graph — preprocessing, conv base, head, sigmoid/softmax — for onnxruntime,
    /// OpenCV, TensorRT or the browser.
    Export(ExportArgs),
    /// The regularization labs on tabular data: one comparison table and plots per lab.
    Lab(Box<LabArgs>),
    /// Check a data folder.
    #[command(subcommand)]
    Data(DataCmd),
    /// Look at augmentation: preview grids and single transforms.
    #[command(subcommand)]
    Augment(AugmentCmd),
    /// Benchmarks (speed is measured here, never asserted in tests).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// What this catdog is and finds here: version, CPU features and kernels, threads, CUDA, hub settings (paste it
    /// into a bug report; the token is never shown).
    Info {
        /// Print one JSON object (keys: version, features, cpu, kernels, threads, cuda, hf_cache, hf_endpoint,
        /// hf_offline, token_found, token_problem, proxy, default_data).
        #[arg(long)]
        json: bool,
    },
}

/// Where the weights come from.
#[derive(Debug, Clone, Args)]
pub struct WeightsFlag {
    /// Hub model id (`org/name[@revision]`), a `.safetensors` or `.onnx` file, `random` (He init, full VGG16 widths) or
    /// `random:W1,W2,W3,W4,W5` (narrow widths).
    #[arg(help_heading = "Model", long, default_value = DEFAULT_MODEL, value_name = "ID|FILE|random")]
    pub weights: String,

    /// Preprocessing of the input [default: what the weights use; ImageNet mean/std for timm/torchvision].
    #[arg(help_heading = "Model", long, value_enum, value_name = "MODE")]
    pub preprocess: Option<PreprocessMode>,

    /// Seed of everything random: `random` weights, the head's initialisation, --val-split, the epochs' order,
    /// augmentation draws and dropout masks.
    #[arg(help_heading = "Model", long, default_value_t = 0, value_name = "N")]
    pub seed: u64,

    #[command(flatten)]
    pub rt: RuntimeFlags,
}

/// Where and how a model computes: the device, the kernels and the precision of the products (the thread count
/// is the global `--threads`). Shared by every command that runs a model; `bench` has its own
/// ([`BenchRuntimeFlags`]: the CPU by default, both kernels timed).
#[derive(Debug, Clone, Args)]
pub struct RuntimeFlags {
    /// Device: cpu, cuda, cuda:N or auto (the first GPU when this catdog is built with CUDA and one answers, else
    /// the CPU).
    #[arg(help_heading = "Device", long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,

    /// Kernels: fast (catdog's CPU ops) or portable (only candle's device-generic ops: the graph that runs on a GPU)
    /// [default: $CATDOG_KERNELS, else fast; always portable on a GPU].
    #[arg(help_heading = "Device", long, value_enum, value_name = "KERNELS")]
    pub kernels: Option<crate::kernels::Kernels>,

    /// Precision of the convolutions' and dense layers' products: auto (bf16 where this CPU has catdog's bf16
    /// kernels, AMX or AVX512-BF16, or the GPU has bf16; fp16 on older GPUs; else fp32), fp32, bf16 as PyTorch's
    /// autocast (inputs rounded to bf16, f32 accumulation; fp32 with a notice on CPUs without bf16 kernels), or fp16
    /// as torch.cuda.amp (f16 products, dynamic loss scaling; for GPUs without bf16).
    #[arg(
        help_heading = "Device",
        long,
        value_enum,
        default_value = "auto",
        value_name = "PRECISION"
    )]
    pub precision: crate::kernels::PrecisionChoice,
}

/// `bench`'s device and precision: the CPU unless told otherwise.
#[derive(Debug, Clone, Args)]
pub struct BenchRuntimeFlags {
    /// Device: cpu, cuda, cuda:N or auto (on a GPU both timed paths are candle's ops).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,

    /// Precision of the convolutions' and dense layers' products: auto (bf16 where this CPU has catdog's bf16
    /// kernels, AMX or AVX512-BF16, or the GPU has bf16; fp16 on older GPUs; else fp32), fp32, bf16 as PyTorch's
    /// autocast (inputs rounded to bf16, f32 accumulation; fp32 with a notice on CPUs without bf16 kernels), or fp16
    /// as torch.cuda.amp (f16 products, dynamic loss scaling; for GPUs without bf16).
    #[arg(long, value_enum, default_value = "fp32", value_name = "PRECISION")]
    pub precision: crate::kernels::PrecisionChoice,
}

#[derive(Debug, Subcommand)]
pub enum WeightsCmd {
    /// Download a hub model's weights (and config) into the Hugging Face cache and print where they went.
    Fetch {
        /// Hub model id, `org/name[@revision]`.
        #[arg(default_value = DEFAULT_MODEL)]
        id: String,
    },
    /// List the conv layers found, their shapes, parameters per block, and how many train.
    Inspect {
        /// Hub model id, `.safetensors` or `.onnx` file, `random` or `random:W1,…,W5` [default: timm/vgg16.tv_in1k].
        #[arg(value_name = "ID|FILE", conflicts_with = "weights_flag")]
        weights: Option<String>,
        /// The same, as every other command takes it [default: timm/vgg16.tv_in1k].
        #[arg(long = "weights", value_name = "ID|FILE")]
        weights_flag: Option<String>,
        /// Count as trainable every layer from this one on (Keras name, e.g. block5_conv1) [default: none].
        #[arg(long, value_name = "LAYER")]
        unfreeze_from: Option<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub w: WeightsFlag,

    /// Layer whose output is saved (Keras name: block1_conv1 … block5_pool).
    #[arg(long, default_value = "block5_pool", value_name = "LAYER")]
    pub layer: String,

    /// Images are resized (squashed) to SIZE × SIZE pixels.
    #[arg(long, default_value_t = 150, value_name = "PIXELS")]
    pub size: u32,

    /// Resize filter (Keras' load_img default is nearest).
    #[arg(long, value_enum, default_value_t = Interpolation::Nearest)]
    pub interpolation: Interpolation,

    /// Images per forward pass.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,

    /// Output file (safetensors: `features` NCHW f32; file list, labels, classes in the metadata).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Stop at the first unreadable image instead of skipping and reporting it.
    #[arg(long)]
    pub strict: bool,

    /// Extract only the K-th of N equal, deterministic slices of the image list (K from 1), so that N jobs (a
    /// Slurm array, a Kubernetes Indexed Job) share the work; `finetune --features DIR` trains on their union
    /// [default: all images].
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::extract::Shard>,

    /// Image files or folders (a single folder with one sub-folder per class gives labels).
    #[arg(required = true, value_name = "IMAGES_OR_DIRS")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Conv-base forward: images and GFLOP per second with catdog's convolution and candle's conv2d in the same run.
    Forward(BenchForwardArgs),
    /// Input pipeline: images per second for decode + resize + augment, batch by batch, with and without the image cache.
    Loader(BenchLoaderArgs),
    /// Training step: images per second for extract or finetune, with or without the frozen-prefix cache.
    Train(BenchTrainArgs),
    /// Single kernels alone on VGG16 shapes, fp32 and bf16: the bf16 gemm and packing, the Winograd weight
    /// transform and gradient, block1_conv2's fused forward.
    Kernels {
        /// Timed repetitions (best is reported) after one warm-up.
        #[arg(long, default_value_t = 3, value_name = "N")]
        iters: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The labs' speed reference: an 11-64-32-1 MLP (dropout 0.2, L2), batch 32, 20 epochs on 10,000 rows.
    Mlp {
        /// Epochs.
        #[arg(long, default_value_t = 20, value_name = "N")]
        epochs: usize,
    },
}

#[derive(Debug, Args)]
pub struct BenchForwardArgs {
    /// Images per batch.
    #[arg(long, alias = "batch", default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Input size in pixels.
    #[arg(long, default_value_t = 150, value_name = "PIXELS")]
    pub size: usize,
    /// Timed repetitions (best is reported) after one warm-up.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub iters: usize,
    #[command(flatten)]
    pub rt: BenchRuntimeFlags,
    /// Weights (random full-width VGG16 by default; the speed does not depend on the values).
    #[arg(long, default_value = "random", value_name = "ID|FILE|random")]
    pub weights: String,
    /// Skip candle's stock conv2d (the baseline).
    #[arg(long)]
    pub no_compare: bool,
    /// Also time every conv layer alone against the gemm peak.
    #[arg(long)]
    pub layers: bool,
    /// With --layers, also time the backward pass (input and weight gradients).
    #[arg(long)]
    pub backward: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Augmentation flags shared by `finetune`, `augment preview` and `bench loader` (ranges, Keras semantics).
#[derive(Debug, Clone, Args, Default)]
pub struct AugmentFlags {
    /// Turn on the course's set: shear 0.2°, zoom 0.2, horizontal flip (other flags below override it).
    #[arg(help_heading = "Augmentation", long)]
    pub augment: bool,
    /// Rotation range in degrees: U(−DEG, DEG); positive turns the content counter-clockwise [default: 0, none].
    #[arg(help_heading = "Augmentation", long, value_name = "DEG", allow_hyphen_values = true)]
    pub rotation: Option<f64>,
    /// Width (column) shift range: a fraction of the width if < 1, else pixels [default: 0, none].
    #[arg(
        help_heading = "Augmentation",
        long,
        value_name = "FRACTION|PIXELS",
        allow_hyphen_values = true
    )]
    pub width_shift: Option<f64>,
    /// Height (row) shift range: a fraction of the height if < 1, else pixels [default: 0, none].
    #[arg(
        help_heading = "Augmentation",
        long,
        value_name = "FRACTION|PIXELS",
        allow_hyphen_values = true
    )]
    pub height_shift: Option<f64>,
    /// Shear range in DEGREES, as Keras: U(−DEG, DEG). Keras' shear_range=0.2 is ±0.2°, almost no shear; for a
    /// visible effect use 5–15 [default: 0, none; --augment: 0.2].
    #[arg(help_heading = "Augmentation", long, value_name = "DEG", allow_hyphen_values = true)]
    pub shear: Option<f64>,
    /// Zoom range: Z for [1−Z, 1+Z], or LO,HI; zx and zy are drawn independently; > 1 zooms out [default: 0,
    /// none; --augment: 0.2].
    #[arg(
        help_heading = "Augmentation",
        long,
        value_name = "Z|LO,HI",
        allow_hyphen_values = true
    )]
    pub zoom: Option<String>,
    /// Flip left-right with probability 0.5.
    #[arg(help_heading = "Augmentation", long)]
    pub horizontal_flip: bool,
    /// Flip upside down with probability 0.5.
    #[arg(help_heading = "Augmentation", long)]
    pub vertical_flip: bool,
    /// Brightness factor range LO,HI (1 = unchanged) [default: none].
    #[arg(help_heading = "Augmentation", long, value_name = "LO,HI")]
    pub brightness: Option<String>,
    /// Channel shift range, added to all channels, on the 0–255 scale [default: 0, none].
    #[arg(
        help_heading = "Augmentation",
        long,
        value_name = "VALUE",
        allow_hyphen_values = true
    )]
    pub channel_shift: Option<f64>,
    /// How points outside the image are filled.
    #[arg(help_heading = "Augmentation", long, value_enum, default_value_t = crate::data::augment::FillMode::Nearest)]
    pub fill_mode: crate::data::augment::FillMode,
    /// Fill value for --fill-mode constant, 0–255 scale.
    #[arg(help_heading = "Augmentation", long, default_value_t = 0.0, value_name = "VALUE")]
    pub cval: f32,
}

/// How images are read.
#[derive(Debug, Clone, Args)]
pub struct ImageFlags {
    /// Images are resized (squashed, aspect ratio not kept) to SIZE × SIZE pixels.
    #[arg(help_heading = "Data", long, default_value_t = 150, value_name = "PIXELS")]
    pub size: u32,
    /// Resize filter (Keras' load_img default is nearest).
    #[arg(help_heading = "Data", long, value_enum, default_value_t = Interpolation::Nearest)]
    pub interpolation: Interpolation,
}

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Download an image-classification data set stored as parquet on the Hugging Face Hub (Dogs-vs-Cats by
    /// default) and write it as OUT/train/<class>/… and OUT/test/<class>/…, with a manifest; re-running resumes an
    /// interrupted fetch and leaves a complete one as it is.
    Fetch {
        /// Hub data set id, `org/name[@revision]`.
        #[arg(long, default_value = crate::data::fetch::DEFAULT_REPO, value_name = "ID")]
        repo: String,
        /// Output folder.
        #[arg(long, default_value = DEFAULT_DATA, value_name = "DIR")]
        out: PathBuf,
        /// Fraction of each class held out as the test split when the repository has none.
        #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
        test_split: f64,
        /// Seed of the --per-class subset and of the test split.
        #[arg(long, default_value_t = 0, value_name = "N")]
        seed: u64,
        /// Keep at most N images per class of the training rows (stratified, seeded), before the test split; the
        /// course's classic is 1000 [default: all].
        #[arg(long, value_name = "N")]
        per_class: Option<usize>,
        /// Replace the images of an earlier fetch with other settings (or another repository) in --out; without
        /// it such a folder is refused, since mixing two selections puts the same images in train and test.
        #[arg(long)]
        force: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Decode every image of a data folder (train/test layout or one class folder) and report per class.
    Check {
        /// The data folder.
        dir: PathBuf,
        /// Exit with code 1 when a file is bad.
        #[arg(long)]
        strict: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Bad files listed per class.
        #[arg(long, default_value_t = 10, value_name = "N")]
        show: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum AugmentCmd {
    /// A PNG grid: each source image and N augmented versions, labelled with the class and the sampled parameters.
    Preview(PreviewArgs),
    /// Apply exactly one transform (no sampling) to one image: the deterministic form of the loader's code.
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// A data folder (train/test layout or one class folder); a few images are picked from it.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "image",
        required_unless_present = "image"
    )]
    pub data: Option<PathBuf>,
    /// Image files to preview.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Augmented versions per image.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub n: usize,
    /// Source images picked from --data (spread over the classes).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub samples: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub img: ImageFlags,
    #[command(flatten)]
    pub aug: AugmentFlags,
    /// Output PNG.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The image.
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    /// Shear angle in degrees.
    #[arg(long, default_value_t = 0.0, value_name = "DEG", allow_hyphen_values = true)]
    pub shear: f64,
    /// Zoom factors ZX,ZY (or one Z for both); > 1 zooms out.
    #[arg(long, default_value = "1", value_name = "ZX,ZY")]
    pub zoom: String,
    /// Rotation in degrees; positive turns the content counter-clockwise.
    #[arg(long, default_value_t = 0.0, value_name = "DEG", allow_hyphen_values = true)]
    pub rotation: f64,
    /// Content displacement ROWS,COLS in pixels: positive moves it down/right, negative up/left.
    #[arg(long, default_value = "0,0", value_name = "ROWS,COLS", allow_hyphen_values = true)]
    pub shift: String,
    /// Flip left-right (after the warp).
    #[arg(long)]
    pub flip: bool,
    /// Flip upside down (after the warp).
    #[arg(long)]
    pub vflip: bool,
    /// Brightness factor (1 = unchanged) [default: 1].
    #[arg(long, value_name = "FACTOR")]
    pub brightness: Option<f64>,
    /// How points outside the image are filled.
    #[arg(long, value_enum, default_value_t = crate::data::augment::FillMode::Nearest)]
    pub fill_mode: crate::data::augment::FillMode,
    /// Fill value for --fill-mode constant, 0–255 scale.
    #[arg(long, default_value_t = 0.0, value_name = "VALUE")]
    pub cval: f32,
    /// Resize to SIZE × SIZE pixels first [default: keep the input's size].
    #[arg(long, value_name = "PIXELS")]
    pub size: Option<u32>,
    /// Resize filter when --size is given.
    #[arg(long, value_enum, default_value_t = Interpolation::Nearest)]
    pub interpolation: Interpolation,
    /// Output PNG.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchLoaderArgs {
    /// The data folder (train/test layout: train is used; or one class folder).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Images per batch.
    #[arg(long, alias = "batch", default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Batches timed per pass [default: one epoch].
    #[arg(long, value_name = "N")]
    pub batches: Option<usize>,
    #[command(flatten)]
    pub img: ImageFlags,
    #[command(flatten)]
    pub aug: AugmentFlags,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The data folder: DIR/train/<class>/… (+ DIR/test or DIR/validation), or one class folder with --val-split.
    #[arg(help_heading = "Data", long, value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// Train the head on these features of `catdog extract` (a file, or a folder of them: the shards of
    /// `extract --shard K/N`) instead of running the conv base; images are matched by path. Extract mode, no
    /// augmentation [default: none: the run extracts its own].
    #[arg(help_heading = "Data", long, value_name = "FILE_OR_DIR")]
    pub features: Option<PathBuf>,
    /// extract: the conv base frozen, only the head trains; finetune: layers from --unfreeze-from on train too.
    #[arg(help_heading = "Model", long, value_enum, default_value_t = crate::model::classifier::TrainMode::Extract)]
    pub mode: crate::model::classifier::TrainMode,
    /// Start from this run's best.safetensors (or this checkpoint): its conv base and its trained head, as the book
    /// fine-tunes block5 only after training the head on the frozen base. Its classes, size, preprocessing and
    /// head must be this run's [default: none: --weights and a new head].
    #[arg(help_heading = "Model", long, value_name = "RUN|CHECKPOINT")]
    pub init_from: Option<PathBuf>,
    /// First trainable layer in finetune mode (Keras name).
    #[arg(help_heading = "Model", long, default_value = "block5_conv1", value_name = "LAYER")]
    pub unfreeze_from: String,
    #[command(flatten)]
    pub w: WeightsFlag,
    #[command(flatten)]
    pub img: ImageFlags,
    /// Epochs to train (with --resume: the new total) [default: 30].
    #[arg(help_heading = "Training", long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(help_heading = "Training", long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Optimizer (Keras semantics).
    #[arg(help_heading = "Training", long, value_enum, default_value_t = crate::train::optim::OptimizerKind::Rmsprop)]
    pub optimizer: crate::train::optim::OptimizerKind,
    /// Learning rate [default: 2e-5 for extract, 1e-5 for finetune, as the course].
    #[arg(help_heading = "Training", long, value_name = "LR")]
    pub lr: Option<f64>,
    /// SGD momentum (0 = none).
    #[arg(help_heading = "Training", long, default_value_t = 0.0, value_name = "M")]
    pub momentum: f64,
    /// Nesterov momentum for SGD.
    #[arg(help_heading = "Training", long)]
    pub nesterov: bool,
    /// Head input: flatten (the course) or gap (global average pooling).
    #[arg(help_heading = "Model", long, value_enum, default_value_t = crate::model::head::HeadKind::Flatten)]
    pub head: crate::model::head::HeadKind,
    /// Units of the hidden Dense layer (0 = none).
    #[arg(help_heading = "Model", long, default_value_t = 256, value_name = "UNITS")]
    pub hidden: usize,
    /// Dropout rate after the hidden layer, a fraction in [0, 1).
    #[arg(help_heading = "Model", long, default_value_t = 0.5, value_name = "FRACTION")]
    pub dropout: f64,
    /// L1 penalty λ·Σ|w| on the head's kernels, added to the loss (Keras l1).
    #[arg(help_heading = "Model", long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub l1: f64,
    /// L2 penalty λ·Σw² on the head's kernels, added to the loss (Keras l2).
    #[arg(help_heading = "Model", long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub l2: f64,
    #[command(flatten)]
    pub aug: AugmentFlags,
    /// Hold out this fraction of the training images for validation (stratified, seeded) when there is no
    /// validation folder [default: none: DIR/validation, else DIR/test, else no validation].
    #[arg(help_heading = "Data", long, value_name = "FRACTION")]
    pub val_split: Option<f64>,
    /// Early stopping: stop after N epochs without improvement (turns early stopping on) [default: off].
    #[arg(help_heading = "Early stopping and best checkpoint", long, value_name = "EPOCHS")]
    pub patience: Option<usize>,
    /// Metric that picks best.safetensors (with or without --patience) and that early stopping and
    /// reduce-on-plateau watch: val_loss, val_accuracy (Keras 2's val_acc), loss, accuracy, val_data_loss,
    /// data_loss. Without validation data the default becomes loss, with a warning.
    #[arg(
        help_heading = "Early stopping and best checkpoint",
        long,
        default_value = "val_loss",
        value_name = "METRIC"
    )]
    pub monitor: String,
    /// Smallest change that counts as an improvement.
    #[arg(
        help_heading = "Early stopping and best checkpoint",
        long,
        default_value_t = 0.0,
        value_name = "DELTA"
    )]
    pub min_delta: f64,
    /// Value the monitored metric must beat before patience resets [default: none].
    #[arg(
        help_heading = "Early stopping and best checkpoint",
        long,
        value_name = "VALUE",
        allow_hyphen_values = true
    )]
    pub baseline: Option<f64>,
    /// Epochs (from 0) not watched by early stopping.
    #[arg(
        help_heading = "Early stopping and best checkpoint",
        long,
        default_value_t = 0,
        value_name = "EPOCH"
    )]
    pub start_from_epoch: usize,
    /// At the end, go back to the weights of the best epoch (Keras 3: even without an early stop).
    #[arg(help_heading = "Early stopping and best checkpoint", long)]
    pub restore_best_weights: bool,
    /// Direction of improvement of the monitored metric.
    #[arg(help_heading = "Early stopping and best checkpoint", long, value_enum, default_value_t = crate::train::early_stop::Mode::Auto)]
    pub es_mode: crate::train::early_stop::Mode,
    /// Reduce the learning rate after N epochs without improvement (turns reduce-on-plateau on) [default: off].
    #[arg(help_heading = "Training", long, value_name = "EPOCHS")]
    pub reduce_lr_patience: Option<usize>,
    /// Factor applied to the learning rate on a plateau.
    #[arg(help_heading = "Training", long, default_value_t = 0.1, value_name = "FACTOR")]
    pub reduce_lr_factor: f64,
    /// Lower bound of the learning rate.
    #[arg(help_heading = "Training", long, default_value_t = 0.0, value_name = "LR")]
    pub min_lr: f64,
    /// Frozen-prefix cache: auto (when there is no augmentation), on, or off.
    #[arg(help_heading = "Output and caches", long, value_enum, default_value_t = crate::train::trainer::CacheMode::Auto)]
    pub cache: crate::train::trainer::CacheMode,
    /// Memory for cached frozen-prefix features, MiB (beyond it they go to a file in the run folder).
    #[arg(help_heading = "Output and caches", long, default_value_t = 4096, value_name = "MIB")]
    pub feature_cache_mb: usize,
    /// Memory for decoded training images, MiB (epochs after the first skip JPEG decoding).
    #[arg(help_heading = "Output and caches", long, default_value_t = 2048, value_name = "MIB")]
    pub image_cache_mb: usize,
    /// Run name (folder under --runs-dir) [default: a timestamp].
    #[arg(help_heading = "Output and caches", long, value_name = "NAME")]
    pub name: Option<String>,
    /// Folder of run folders.
    #[arg(help_heading = "Output and caches", long, default_value = "runs", value_name = "DIR")]
    pub runs_dir: PathBuf,
    /// Also log the epochs to TensorBoard event files here, in Keras' layout (DIR/train, DIR/validation; scalars
    /// epoch_loss, epoch_accuracy, … at step = epoch from 0), with the config as text and the curves as an image
    /// [default: none].
    #[arg(help_heading = "Output and caches", long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Continue the run in this folder from its last.safetensors (its config.json is used; --epochs may extend it).
    #[arg(help_heading = "Output and caches", long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Stop at the first unreadable image instead of skipping and reporting it.
    #[arg(help_heading = "Data", long)]
    pub strict: bool,
}

/// How `evaluate` and `predict` run a checkpoint: test-time augmentation, batch, device, kernels, precision.
#[derive(Debug, Args)]
pub struct InferenceFlags {
    /// Test-time augmentation: average each image's probabilities over N looks — the image, its horizontal flip,
    /// and N − 2 seeded draws of the augmentation its run trained with (the course's set if none); 1 is the plain
    /// evaluation.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub tta: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    #[command(flatten)]
    pub rt: RuntimeFlags,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A checkpoint written by `catdog finetune` (best.safetensors or last.safetensors).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Labelled folder (its test/ part when it has one, else validation/, else the folder itself).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    #[command(flatten)]
    pub run: InferenceFlags,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write a PNG grid of misclassified images, highest loss first [default: none].
    #[arg(long, value_name = "FILE")]
    pub misclassified: Option<PathBuf>,
    /// With --misclassified: lay each image's Grad-CAM (block5_conv3, for the class it was taken for) over it.
    #[arg(long, requires = "misclassified")]
    pub gradcam: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A checkpoint written by `catdog finetune`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The layer whose output is explained, as Keras names it (block5_conv3 is its conv + ReLU).
    #[arg(long, default_value = "block5_conv3", value_name = "LAYER")]
    pub layer: String,
    /// The class explained [default: each image's predicted class].
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Folder of the overlays: one PNG per image, and grid.png for several.
    #[arg(long, default_value = "explain", value_name = "DIR")]
    pub out: PathBuf,
    /// Print one JSON line per image (path, class, probability, layer, cam at the layer's resolution) instead of
    /// writing overlays.
    #[arg(long)]
    pub json: bool,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,
    /// Kernels: fast or portable (the gradients are computed in fp32 on either).
    #[arg(long, value_enum, value_name = "KERNELS")]
    pub kernels: Option<crate::kernels::Kernels>,
    /// Image files or folders.
    #[arg(required = true, value_name = "IMAGES_OR_DIRS")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint written by `catdog finetune` (best.safetensors or last.safetensors).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The format: onnx (opset 17; input `pixels` float32 N×3×S×S RGB 0–255 at the checkpoint's size, output
    /// `probabilities` N×classes in the checkpoint's class order).
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print one JSON object (out, format, opset, nodes, parameters, bytes).
    #[arg(long)]
    pub json: bool,
}

/// What `catdog export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// ONNX, opset 17.
    Onnx,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A checkpoint written by `catdog finetune`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub run: InferenceFlags,
    /// Print one JSON object per image (path, label, probabilities) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Image files or folders (walked recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// What trains.
    #[arg(long, value_enum, default_value_t = crate::model::classifier::TrainMode::Finetune)]
    pub mode: crate::model::classifier::TrainMode,
    /// First trainable layer in finetune mode.
    #[arg(long, default_value = "block5_conv1", value_name = "LAYER")]
    pub unfreeze_from: String,
    /// Measure the step from cached frozen-prefix outputs (on), from images (off), or both.
    #[arg(long, value_enum, default_value_t = BenchCache::Both)]
    pub cache: BenchCache,
    /// Images per step.
    #[arg(long, alias = "batch", default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Input size in pixels.
    #[arg(long, default_value_t = 150, value_name = "PIXELS")]
    pub size: usize,
    /// Timed steps (best is reported) after one warm-up.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub steps: usize,
    #[command(flatten)]
    pub rt: BenchRuntimeFlags,
    /// Weights (random full-width VGG16 by default).
    #[arg(long, default_value = "random", value_name = "ID|FILE|random")]
    pub weights: String,
    /// Skip the comparisons: fp32 beside bf16, and candle's stock conv2d (for profiling one path).
    #[arg(long)]
    pub no_compare: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchCache {
    On,
    Off,
    Both,
}

/// `catdog lab NAME`: one lab, or `all` (the CLI's loop over them, with an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabChoice {
    One(crate::tabular::labs::LabName),
    All,
}

impl clap::ValueEnum for LabChoice {
    fn value_variants<'a>() -> &'a [Self] {
        static VARIANTS: std::sync::LazyLock<Vec<LabChoice>> = std::sync::LazyLock::new(|| {
            let mut v: Vec<LabChoice> = crate::tabular::labs::LabName::ALL.map(LabChoice::One).to_vec();
            v.push(LabChoice::All);
            v
        });
        &VARIANTS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            LabChoice::One(lab) => lab.to_possible_value(),
            LabChoice::All => {
                Some(clap::builder::PossibleValue::new("all").help("Every lab, each in its folder, with an index"))
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Which lab, or all of them.
    #[arg(value_enum)]
    pub lab: LabChoice,
    /// A CSV file with a header row (instead of each lab's default data).
    #[arg(long, value_name = "FILE", requires = "target", conflicts_with = "dataset")]
    pub csv: Option<PathBuf>,
    /// The label column of --csv.
    #[arg(long, value_name = "COLUMN")]
    pub target: Option<String>,
    /// Columns of --csv to leave out (comma-separated) [default: none].
    #[arg(long, value_name = "COL,…", value_delimiter = ',')]
    pub drop: Vec<String>,
    /// Force classification or regression [default: from the target column].
    #[arg(long, value_enum)]
    pub task: Option<crate::tabular::dataset::Task>,
    /// A built-in data set [default: breast_cancer; moons for overfit and dropout].
    #[arg(long, value_enum)]
    pub dataset: Option<crate::tabular::dataset::Builtin>,
    /// Points of a generated data set.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub n: usize,
    /// Noise (standard deviation) of a generated data set.
    #[arg(long, default_value_t = 0.2, value_name = "STD")]
    pub noise: f64,
    /// Fraction held out for validation (stratified for classification).
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    pub val_split: f64,
    /// Input scaling, fitted on the training split.
    #[arg(long, value_enum, default_value_t = crate::tabular::dataset::Scaling::Standard)]
    pub scaling: crate::tabular::dataset::Scaling,
    /// Hidden layer sizes.
    #[arg(long, default_value = "64,32", value_name = "UNITS,…", value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// Hidden activation: relu, leaky_relu or leaky_relu:α (α 0.3 as Keras), elu or elu:α, selu, prelu, sigmoid, tanh.
    #[arg(long, default_value = "relu", value_name = "NAME")]
    pub activation: String,
    /// Dropout rate after each hidden layer, a fraction in [0, 1).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub dropout: f64,
    /// L1 penalty λ·Σ|w| on the kernels (Keras l1).
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub l1: f64,
    /// L2 penalty λ·Σw² on the kernels (Keras l2).
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub l2: f64,
    /// Batch normalization after each hidden Dense layer.
    #[arg(long, conflicts_with = "layernorm")]
    pub batchnorm: bool,
    /// Layer normalization after each hidden Dense layer.
    #[arg(long)]
    pub layernorm: bool,
    /// Normalization defaults: keras (momentum 0.99, ε 1e-3) or torch (momentum 0.1, ε 1e-5).
    #[arg(long, value_enum, default_value_t = crate::nn::NormDefaults::Keras)]
    pub norm_defaults: crate::nn::NormDefaults,
    /// Kernel initialisation: zeros, normal:σ, glorot, he, lecun.
    #[arg(long, default_value = "glorot", value_name = "INIT")]
    pub init: String,
    /// Optimizer (Keras semantics).
    #[arg(long, value_enum, default_value_t = crate::train::optim::OptimizerKind::Adam)]
    pub optimizer: crate::train::optim::OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3, value_name = "LR")]
    pub lr: f64,
    /// Epochs per variant [default: 300 for overfit and dropout, whose too-large network needs them to overfit;
    /// 100 for the others].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Rows per step.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Early-stopping patience where a lab uses it (epochs).
    #[arg(long, default_value_t = 10, value_name = "EPOCHS")]
    pub patience: usize,
    /// Training loss the scaling lab counts epochs to.
    #[arg(long, default_value_t = 0.1, value_name = "LOSS")]
    pub target_loss: f64,
    /// First seed of the split, the generated data, the initialisation, the batches and dropout.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
    /// Seeds per variant (SEED, SEED+1, …): each its own split and initialisation; tables show mean ± standard
    /// deviation.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub seeds: usize,
    /// Which Dense kernels --l1/--l2 and the penalty labs reach: the hidden layers (as the course's Keras code) or
    /// all, the output layer too.
    #[arg(long, value_enum, default_value_t = crate::tabular::fit::Regularize::Hidden)]
    pub regularize: crate::tabular::fit::Regularize,
    /// Output folder: each lab writes its own sub-folder DIR/<lab>/ (`all`: every lab's, and DIR/index.md).
    #[arg(long, value_name = "DIR", default_value = "runs/labs")]
    pub out: PathBuf,
    /// Also write each variant's curves (its first seed) as TensorBoard runs: DIR/<lab>/<variant>/train and
    /// …/validation, epoch_loss and epoch_<metric> at step = epoch from 0 [default: none].
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Print the results as JSON (one object; `all`: an array).
    #[arg(long)]
    pub json: bool,
}

fn parse_progress(s: &str) -> Result<crate::progress::ProgressMode, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

#[derive(Debug, Args)]
pub struct LrFindArgs {
    #[command(flatten)]
    pub train: FinetuneArgs,
    /// First learning rate of the sweep.
    #[arg(
        long,
        default_value_t = 1e-7,
        value_name = "LR",
        help_heading = "Learning-rate finder"
    )]
    pub start_lr: f64,
    /// Last learning rate of the sweep.
    #[arg(
        long,
        default_value_t = 10.0,
        value_name = "LR",
        help_heading = "Learning-rate finder"
    )]
    pub end_lr: f64,
    /// Steps of the sweep (one batch each); it stops early once the smoothed loss exceeds 4× its minimum.
    #[arg(long, default_value_t = 100, value_name = "N", help_heading = "Learning-rate finder")]
    pub iters: usize,
    /// The plot of loss against learning rate, with the suggestions marked.
    #[arg(
        long,
        default_value = "lr_find.png",
        value_name = "FILE",
        help_heading = "Learning-rate finder"
    )]
    pub out: PathBuf,
    /// Print one JSON object: suggestion (the valley), steepest, points ([lr, smoothed loss]).
    #[arg(long, help_heading = "Learning-rate finder")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CourseArgs {
    /// The data folder: DIR/train/<class>/… with DIR/test/<class>/… (the recipes validate and are evaluated on it).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// Folder of the recipes' run folders and the report.
    #[arg(long, value_name = "DIR", default_value = "runs/course")]
    pub out: PathBuf,
    /// Recipes to run, in order: extract, extract-aug, finetune, finetune-from-extract.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NAME,…",
        default_value = "extract,extract-aug,finetune,finetune-from-extract"
    )]
    pub recipes: Vec<String>,
    /// Epochs of every recipe [default: 30, the course's; 3 with --quick].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// A smaller demonstration: 3 epochs per recipe unless --epochs says otherwise.
    #[arg(long)]
    pub quick: bool,
    /// finetune flags given to every recipe, after `--` (e.g. `-- --weights FILE --preprocess caffe --precision bf16`).
    #[arg(last = true, value_name = "FINETUNE FLAGS")]
    pub shared: Vec<String>,
}
