//! Command-line interface: subcommands and flags only (clap derive). Validation lives with the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use catdog::data::decode::Interpolation;
use catdog::data::preprocess::PreprocessMode;
use catdog::model::weights::DEFAULT_MODEL;

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get or look at conv-base weights.
    #[command(subcommand)]
    Weights(WeightsCmd),
    /// Run the conv base over images and save a layer's output (the "fast feature extraction" recipe).
    Extract(ExtractArgs),
    /// Benchmarks (speed is measured here, never asserted in tests).
    #[command(subcommand)]
    Bench(BenchCmd),
}

/// Where the weights come from.
#[derive(Debug, Clone, Args)]
pub struct WeightsFlag {
    /// Hub model id (`org/name[@revision]`), a `.safetensors` file, `random` (He init, full VGG16 widths) or
    /// `random:W1,W2,W3,W4,W5` (narrow widths).
    #[arg(long, default_value = DEFAULT_MODEL, value_name = "ID|FILE|random")]
    pub weights: String,

    /// Preprocessing of the input [default: what the weights use; ImageNet mean/std for timm/torchvision].
    #[arg(long, value_enum, value_name = "MODE")]
    pub preprocess: Option<PreprocessMode>,

    /// Seed for `random` weights.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,

    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
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
        /// Hub model id, `.safetensors` file, `random` or `random:W1,…,W5`.
        #[arg(default_value = DEFAULT_MODEL, value_name = "ID|FILE")]
        weights: String,
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

    /// Image files or folders (a single folder with one sub-folder per class gives labels).
    #[arg(required = true, value_name = "IMAGES_OR_DIRS")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Conv-base forward: images/s and GFLOP/s with catdog's convolution and candle's conv2d in the same run.
    Forward(BenchForwardArgs),
}

#[derive(Debug, Args)]
pub struct BenchForwardArgs {
    /// Images per batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch: usize,
    /// Input size in pixels.
    #[arg(long, default_value_t = 150, value_name = "PIXELS")]
    pub size: usize,
    /// Timed repetitions (best is reported) after one warm-up.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub iters: usize,
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
