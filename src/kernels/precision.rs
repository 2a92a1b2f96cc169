//! `--precision fp32|bf16`: which precision the convolutions' and dense layers' products run in, and on which kernel.
//!
//! bf16 means what PyTorch's CPU autocast means: the products' inputs rounded to bf16, accumulated in f32;
//! bias, ReLU, pooling, the loss, the weight updates, optimizer state and master weights stay f32. On the CPU's
//! own kernels the bf16 products are the Winograd domain's (see [`super::winograd_f2::forward_bf16`]) or, for the
//! first convolution, im2col's, on AVX512-BF16, chosen by CPUID; a CPU without it runs fp32 with a one-line
//! notice. The portable twins cast the
//! convolution's inputs to candle's bf16 and its output back to f32 on CUDA; on the CPU (where candle has no bf16
//! matmul) they round the inputs to bf16 and convolve in f32, the same arithmetic.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::bf16::{self, Bf16Kernel};
use super::choice::Kernels;

/// The precision of the convolutions' and dense layers' products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    Fp32,
    /// Convolution and dense-layer inputs rounded to bf16, products accumulated in f32 (PyTorch's CPU autocast).
    Bf16,
}

impl Precision {
    /// The name written to config.json and shown in logs.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// What runs when this precision is asked for with `kernels` on `device`.
    pub fn resolve(self, device: &Device, kernels: Kernels) -> Resolved {
        let kernels = kernels.for_device(device);
        match self {
            Precision::Fp32 => Resolved::new(Precision::Fp32, "fp32", None),
            Precision::Bf16 if !kernels.own_ops() => Resolved::new(Precision::Bf16, "candle bf16", None),
            Precision::Bf16 => match (kernels, bf16::kernel()) {
                (Kernels::Fast, Some(k)) => {
                    // A CPU with AMX whose tiles cannot be used says so once (the AVX512-BF16 kernel runs).
                    let notice = match super::amx::status() {
                        super::amx::Amx::Refused(why) => Some(format!("note: AMX is not used: {why}; bf16 runs on {}", k.name())),
                        _ => None,
                    };
                    Resolved::new(Precision::Bf16, k.name(), notice)
                }
                (Kernels::Fast, None) => Resolved::new(
                    Precision::Fp32,
                    "fp32",
                    Some(
                        "note: this CPU has no AVX512-BF16, so --precision bf16 runs in fp32 (same results, fp32 speed)"
                            .to_string(),
                    ),
                ),
                _ => Resolved::new(
                    Precision::Fp32,
                    "fp32",
                    Some(format!("note: --precision bf16 has no {} kernels; running fp32", kernels.name())),
                ),
            },
        }
    }
}

/// `--precision`: a precision, or `auto` — bf16 where catdog has bf16 kernels for this CPU (AMX or AVX512-BF16),
/// fp32 elsewhere (on the portable kernels and on GPUs too, for now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// bf16 where this CPU has catdog's bf16 kernels, else fp32.
    #[default]
    Auto,
    Fp32,
    Bf16,
}

impl From<Precision> for PrecisionChoice {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Fp32 => PrecisionChoice::Fp32,
            Precision::Bf16 => PrecisionChoice::Bf16,
        }
    }
}

impl PrecisionChoice {
    /// What runs when this is asked for with `kernels` on `device`; `auto` says what it chose and why.
    pub fn resolve(self, device: &Device, kernels: Kernels) -> Resolved {
        match self {
            PrecisionChoice::Fp32 => Precision::Fp32.resolve(device, kernels),
            PrecisionChoice::Bf16 => Precision::Bf16.resolve(device, kernels),
            PrecisionChoice::Auto => {
                let kernels = kernels.for_device(device);
                let own_bf16 = kernels == Kernels::Fast && bf16::kernel().is_some();
                if own_bf16 {
                    let mut r = Precision::Bf16.resolve(device, kernels);
                    let why = format!(
                        "precision auto: bf16 on {} (inputs of the products rounded to bf16, f32 sums, as PyTorch's \
                         autocast; --precision fp32 for f32)",
                        r.kernel
                    );
                    r.notice = Some(r.notice.map_or(why.clone(), |n| format!("{why}\n{n}")));
                    r
                } else {
                    let why = if !device.is_cpu() {
                        "on a GPU auto keeps fp32; --precision bf16 runs candle's bf16"
                    } else if kernels != Kernels::Fast {
                        "the portable kernels have no bf16 speed-up on the CPU"
                    } else {
                        "this CPU has no AVX512-BF16 or AMX"
                    };
                    let mut r = Precision::Fp32.resolve(device, kernels);
                    r.notice = Some(format!("precision auto: fp32 ({why})"));
                    r
                }
            }
        }
    }
}

/// The precision that runs, after CPUID and the kernels had their say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What runs (fp32 where bf16 was asked for but cannot run).
    pub precision: Precision,
    /// The kernel: "fp32", "avx512-bf16" or "candle bf16" (the portable twins, CUDA).
    pub kernel: &'static str,
    /// The one line to print when the precision asked for is not what runs.
    pub notice: Option<String>,
}

impl Resolved {
    fn new(precision: Precision, kernel: &'static str, notice: Option<String>) -> Resolved {
        Resolved {
            precision,
            kernel,
            notice,
        }
    }
}

/// What runs a convolution: the kernels and the precision of its products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compute {
    pub kernels: Kernels,
    pub precision: Precision,
}

impl From<Kernels> for Compute {
    fn from(kernels: Kernels) -> Compute {
        Compute {
            kernels,
            precision: Precision::Fp32,
        }
    }
}

impl Compute {
    /// The bf16 kernel catdog's own CPU ops use, when bf16 is asked for and the CPU has one.
    pub fn bf16_kernel(self) -> Option<Bf16Kernel> {
        (self.precision == Precision::Bf16 && self.kernels == Kernels::Fast)
            .then(bf16::kernel)
            .flatten()
    }
}
