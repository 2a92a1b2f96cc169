//! `--precision fp32|bf16|fp16|auto`: which precision the convolutions' and dense layers' products run in, and on
//! which kernel.
//!
//! bf16 means what PyTorch's CPU autocast means: the products' inputs rounded to bf16, accumulated in f32;
//! bias, ReLU, pooling, the loss, the weight updates, optimizer state and master weights stay f32. On the CPU's
//! own kernels the bf16 products are the Winograd domain's (see [`super::winograd_f2::forward_bf16`]) or, for the
//! first convolution, im2col's, on AVX512-BF16, chosen by CPUID; a CPU without it runs fp32 with a one-line
//! notice. The portable twins cast the
//! convolution's inputs to candle's bf16 and its output back to f32 on CUDA; on the CPU (where candle has no bf16
//! matmul) they round the inputs to bf16 and convolve in f32, the same arithmetic.

use candle_core::{DType, Device, Tensor};
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
    /// Convolution and dense-layer inputs and outputs in f16, sums in f32, the loss scaled dynamically
    /// (`torch.cuda.amp`).
    Fp16,
}

impl Precision {
    /// The name written to config.json and shown in logs.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// The half type the portable twins cast to (`None` for fp32).
    pub fn half_dtype(self) -> Option<DType> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(DType::BF16),
            Precision::Fp16 => Some(DType::F16),
        }
    }

    /// What runs when this precision is asked for with `kernels` on `device`.
    pub fn resolve(self, device: &Device, kernels: Kernels) -> Resolved {
        let kernels = kernels.for_device(device);
        match self {
            Precision::Fp32 => Resolved::new(Precision::Fp32, "fp32", None),
            Precision::Fp16 if !device.is_cpu() => Resolved::new(Precision::Fp16, "candle f16", None),
            Precision::Fp16 => Resolved::new(
                Precision::Fp16,
                "portable f16",
                kernels.own_ops().then(|| {
                    "note: catdog has no fp16 CPU kernels: --precision fp16 runs the portable convolutions in f16 \
                     arithmetic (as a GPU would, much slower here; bf16 or fp32 is the CPU's fast path)"
                        .to_string()
                }),
            ),
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

/// `--precision`: a precision, or `auto` — bf16 where catdog has bf16 kernels for this CPU (AMX or AVX512-BF16)
/// or the GPU has bf16 (compute capability 8.0 and later), fp16 on older GPUs, fp32 elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// bf16 where this CPU has catdog's bf16 kernels or the GPU has bf16, fp16 on a GPU without, else fp32.
    #[default]
    Auto,
    Fp32,
    Bf16,
    Fp16,
}

impl From<Precision> for PrecisionChoice {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Fp32 => PrecisionChoice::Fp32,
            Precision::Bf16 => PrecisionChoice::Bf16,
            Precision::Fp16 => PrecisionChoice::Fp16,
        }
    }
}

impl PrecisionChoice {
    /// What runs when this is asked for with `kernels` on `device`; `auto` says what it chose and why.
    pub fn resolve(self, device: &Device, kernels: Kernels) -> Resolved {
        match self {
            PrecisionChoice::Fp32 => Precision::Fp32.resolve(device, kernels),
            PrecisionChoice::Bf16 => Precision::Bf16.resolve(device, kernels),
            PrecisionChoice::Fp16 => Precision::Fp16.resolve(device, kernels),
            PrecisionChoice::Auto if !device.is_cpu() => {
                let (precision, why) = gpu_auto(crate::device::compute_capability(device));
                let mut r = precision.resolve(device, kernels);
                r.notice = Some(format!("precision auto: {} ({why})", precision.name()));
                r
            }
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
                    let why = if kernels != Kernels::Fast {
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

/// What `auto` runs on a GPU of compute capability `cc` (major, minor), and why: bf16 from 8.0 (Ampere) on, fp16
/// with loss scaling before (T4, V100, P100: the free notebook GPUs), fp32 when the capability is unknown.
pub fn gpu_auto(cc: Option<(u32, u32)>) -> (Precision, String) {
    match cc {
        Some((major, minor)) if major >= 8 => (
            Precision::Bf16,
            format!("this GPU (compute capability {major}.{minor}) has bf16; --precision fp32 for f32"),
        ),
        Some((major, minor)) => (
            Precision::Fp16,
            format!(
                "this GPU (compute capability {major}.{minor}) has no bf16: f16 products with dynamic loss scaling, \
                 as torch.cuda.amp; --precision fp32 for f32"
            ),
        ),
        None => (Precision::Fp32, "the GPU's compute capability is unknown".to_string()),
    }
}

/// The product `f(x, w)` (a convolution or a matmul) in `precision` on candle's own ops — the portable twins.
/// On a GPU the factors are cast to the half type and the result back to f32. On the CPU, where candle has no fast
/// half matmul, the factors are rounded to it and multiplied in f32 (a product of two bf16 or two f16 values is
/// exact in f32, and the sums are f32 as on the GPU); fp16 rounds the result to f16 as well, so that its range
/// (±65504) and, through the rounding's backward, the gradient's are f16's as on a GPU — what loss scaling is for.
/// An fp16 output past that range is an error (see [`check_f16_range`]).
pub fn portable_product(
    x: &Tensor,
    w: &Tensor,
    precision: Precision,
    f: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let Some(half) = precision.half_dtype() else {
        return f(x, w);
    };
    if !x.device().is_cpu() {
        let y = f(&x.to_dtype(half)?, &w.to_dtype(half)?)?.to_dtype(DType::F32)?;
        return match precision {
            Precision::Fp16 => check_f16_range(y),
            _ => Ok(y),
        };
    }
    let round = |t: &Tensor| t.to_dtype(half)?.to_dtype(DType::F32);
    let y = f(&round(x)?, &round(w)?)?;
    match precision {
        Precision::Fp16 => check_f16_range(round(&y)?),
        _ => Ok(y),
    }
}

/// `y` (an fp16 product's output) unless a value overflowed f16 to infinity: then an error that says what to do.
/// Left alone, the infinity would become NaN in the next product and vanish in a ReLU or a max-pool (both turn NaN
/// into 0 or drop it), leaving a finite, meaningless output.
fn check_f16_range(y: Tensor) -> candle_core::Result<Tensor> {
    let largest = y.abs()?.max_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if largest.is_finite() {
        return Ok(y);
    }
    // A plain message (candle's `bail!` would attach a backtrace to a user's error).
    Err(candle_core::Error::Msg(crate::error::F16_OVERFLOW.into()))
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
        // (fp16 has no kernel of catdog's: `conv::own_algo` sends it to the portable twin.)
        (self.precision == Precision::Bf16 && self.kernels == Kernels::Fast)
            .then(bf16::kernel)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_on_a_gpu_is_bf16_from_ampere_on_fp16_before_and_fp32_when_unknown() {
        let picks = [Some((7, 5)), Some((7, 0)), Some((8, 0)), Some((9, 0)), None].map(|cc| gpu_auto(cc).0);
        use Precision::*;
        assert_eq!(picks, [Fp16, Fp16, Bf16, Bf16, Fp32]);
        assert!(gpu_auto(Some((7, 5))).1.contains("7.5) has no bf16"));
        // `catdog info` shows the same choice per GPU.
        let t4 = crate::info::Gpu::of(Some((7, 5)));
        assert_eq!((t4.compute_capability.as_str(), t4.auto_precision), ("7.5", "fp16"));
    }

    #[test]
    fn fp16_names_itself_and_runs_candles_ops_with_a_note_where_catdog_has_kernels() {
        let fast = Precision::Fp16.resolve(&Device::Cpu, Kernels::Fast);
        assert_eq!((fast.precision, fast.kernel), (Precision::Fp16, "portable f16"));
        assert!(fast.notice.unwrap().contains("no fp16 CPU kernels"));
        assert_eq!(Precision::Fp16.resolve(&Device::Cpu, Kernels::Portable).notice, None);
        assert_eq!(PrecisionChoice::from(Precision::Fp16), PrecisionChoice::Fp16);
        assert_eq!(Precision::Fp16.half_dtype(), Some(DType::F16));
    }

    #[test]
    fn an_fp16_product_past_65504_is_an_error_that_says_so_and_is_recognised_as_f16_overflow() {
        let x = Tensor::new(&[[300f32, 300.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[200f32, 200.0]], &Device::Cpu).unwrap();
        let product = |p| portable_product(&x, &w, p, |a, b| a.matmul(&b.t()?));
        // 120000 fits bf16 and f32, not f16.
        assert_eq!(
            product(Precision::Bf16).unwrap().to_vec2::<f32>().unwrap()[0][0],
            120_000.0
        );
        let err = crate::Error::from(product(Precision::Fp16).unwrap_err());
        assert!(
            err.is_f16_overflow() && err.to_string().contains("--precision bf16 or fp32"),
            "{err}"
        );
        assert!(!crate::Error::Other("x".into()).is_f16_overflow());
    }
}
