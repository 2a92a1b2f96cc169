//! The command line's names and help for the library's choices (`--precision fp32|bf16|fp16`, `--mode`, …): clap's
//! `ValueEnum` for each, here, so that the library's types know nothing of clap.

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::data::augment::FillMode;
use crate::data::decode::Interpolation;
use crate::data::preprocess::PreprocessMode;
use crate::kernels::Kernels;
use crate::kernels::{Precision, PrecisionChoice};
use crate::model::classifier::TrainMode;
use crate::model::head::HeadKind;
use crate::nn::{Norm, NormDefaults};
use crate::tabular::dataset::Builtin;
use crate::tabular::dataset::Scaling;
use crate::tabular::dataset::Task;
use crate::tabular::fit::Regularize;
use crate::tabular::labs::LabName;
use crate::train::config::CacheMode;
use crate::train::early_stop::Mode;
use crate::train::optim::OptimizerKind;

/// `impl ValueEnum for T`: each variant's name on the command line (kebab-case), any alias, and its help.
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal $(| $alias:literal)?: $help:literal,)+ }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                #[allow(unreachable_patterns)]
                let (name, help, alias): (&str, &str, Option<&str>) = match self {
                    $($ty::$variant => ($name, $help, None $(.or(Some($alias)))?),)+
                    _ => return None,
                };
                let value = PossibleValue::new(name);
                let value = if help.is_empty() { value } else { value.help(help) };
                Some(match alias {
                    Some(a) => value.alias(a),
                    None => value,
                })
            }
        }
    };
}

value_enum!(TrainMode {
    Extract => "extract": "The whole conv base frozen; only the head trains",
    Finetune => "finetune": "Layers from --unfreeze-from onward train with the head",
});

value_enum!(HeadKind {
    Flatten => "flatten": "Flatten C×H×W in NCHW order (the course's Flatten; PyTorch's `torch.flatten(x, 1)`)",
    Gap => "gap": "Global average pooling over H×W",
});

value_enum!(Norm {
    None => "none": "",
    Batch => "batch": "",
    Layer => "layer": "",
});

value_enum!(NormDefaults {
    Keras => "keras": "Keras: batch-norm momentum 0.99 (running = 0.99·running + 0.01·batch), ε 1e-3 (also layer norm)",
    Torch => "torch": "PyTorch: momentum 0.1 (running = 0.9·running + 0.1·batch, unbiased variance), ε 1e-5",
});

value_enum!(Regularize {
    Hidden => "hidden": "The hidden layers only, as the course's Keras code puts `kernel_regularizer` on the hidden `Dense` layers",
    All => "all": "Every Dense layer, the output layer too",
});

value_enum!(Task {
    Classification => "classification": "",
    Regression => "regression": "",
});

value_enum!(Builtin {
    BreastCancer => "breast-cancer" | "breast_cancer": "The shipped UCI breast-cancer data (569 × 30, two classes, features of very different ranges)",
    Moons => "moons": "Two interleaving half circles (2-D, two classes)",
    Circles => "circles": "A circle inside a circle (2-D, two classes)",
    Spirals => "spirals": "Two interleaved spirals (2-D, two classes)",
    Sine => "sine": "A noisy sine on [−3, 3] with few points (1-D regression, easy to overfit)",
});

value_enum!(Scaling {
    None => "none": "The features as they are",
    Standard => "standard": "(x − mean) / std per feature",
    Minmax => "minmax": "(x − min) / (max − min) per feature, to [0, 1]",
});

value_enum!(LabName {
    Overfit => "overfit": "A too-large network on little data: train and validation curves diverge",
    L1 => "l1": "Increasing L1 penalties: metrics, gap, near-zero weights, weight histograms",
    L2 => "l2": "Increasing L2 penalties",
    Elastic => "elastic": "L1 and L2 together",
    Dropout => "dropout": "Dropout 0 … 0.5 on classification and on the 1-D regression, with decision maps and fitted lines",
    Scaling => "scaling": "No scaling vs standard vs min-max: epochs to a target loss, final metrics",
    Activations => "activations": "sigmoid, tanh, relu, leaky_relu, elu, selu, prelu: metrics and dead units; each function and derivative",
    Init => "init": "zeros, large normal, glorot, he: does it learn, and the first epoch's gradient norms per layer",
    Normalization => "normalization": "none vs batch norm vs layer norm",
    EarlyStopping => "early-stopping": "The same run with and without early stopping",
    Ablation => "ablation": "Baseline, each regularizer alone and all combined",
});

value_enum!(Precision {
    Fp32 => "fp32": "f32 everywhere",
    Bf16 => "bf16": "Convolution and dense-layer inputs rounded to bf16, products accumulated in f32 (PyTorch's CPU autocast)",
    Fp16 => "fp16": "Convolution and dense-layer inputs and outputs in f16, f32 sums, dynamic loss scaling (torch.cuda.amp; for GPUs without bf16 — no fast CPU kernels)",
});

value_enum!(Kernels {
    Fast => "fast": "catdog's CPU ops (f32): Winograd F(2×2, 3×3) for 3×3 kernels (F(4×4, 3×3) where it wins), im2col + gemm otherwise, fused pooling and optimizer updates. Off the CPU every op falls back to its portable twin",
    Portable => "portable": "Only candle's device-generic ops: exactly the graph that `--device cuda` runs",
});

value_enum!(OptimizerKind {
    Rmsprop => "rmsprop": "Keras RMSprop: v = ρv + (1−ρ)g², w −= lr·g/√(v + ε), ρ 0.9, ε 1e-7",
    Adam => "adam": "Keras Adam: β1 0.9, β2 0.999, ε 1e-7",
    Sgd => "sgd": "SGD with optional (Nesterov) momentum, Keras form",
});

value_enum!(CacheMode {
    Auto => "auto": "On when the training input is deterministic (no augmentation); validation always uses it",
    On => "on": "Always (an error with augmentation, whose input changes every epoch)",
    Off => "off": "Never for training (validation still uses it)",
});

value_enum!(Mode {
    Auto => "auto": "`min` for names ending in \"loss\", `max` otherwise (accuracy, auc…)",
    Min => "min": "",
    Max => "max": "",
});

value_enum!(PreprocessMode {
    Imagenet => "imagenet": "RGB, x/255, then ImageNet mean/std (torchvision and timm weights)",
    Rescale => "rescale": "RGB, x/255 only (the course's `rescale=1./255`)",
    Caffe => "caffe": "BGR, 0–255, minus the ImageNet BGR means (Keras' original VGG16 weights)",
});

value_enum!(Interpolation {
    Nearest => "nearest": "Nearest neighbour (Keras' `load_img` default)",
    Bilinear => "bilinear": "Bilinear with antialiasing on downscale (PIL's BILINEAR)",
});

value_enum!(FillMode {
    Nearest => "nearest": "Repeat the edge pixel (Keras' default)",
    Constant => "constant": "`cval` for any sample outside the image",
    Reflect => "reflect": "Mirror about the edge, edge pixel repeated (d c b a | a b c d | d c b a)",
    Wrap => "wrap": "Wrap around to the opposite edge (scipy's `wrap`: period size − 1)",
});

value_enum!(PrecisionChoice {
    Auto => "auto": "bf16 where this CPU has catdog's bf16 kernels (AMX or AVX512-BF16) or the GPU has bf16, fp16 on older GPUs, else fp32",
    Fp32 => "fp32": "f32 everywhere",
    Bf16 => "bf16": "Convolution and dense-layer inputs rounded to bf16, products accumulated in f32 (PyTorch's CPU autocast)",
    Fp16 => "fp16": "Convolution and dense-layer inputs and outputs in f16, f32 sums, dynamic loss scaling (torch.cuda.amp; for GPUs without bf16 — no fast CPU kernels)",
});
