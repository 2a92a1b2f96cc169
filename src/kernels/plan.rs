//! Which algorithm a convolution's forward runs, on which kernel and SIMD level, and why: one decision, made by
//! [`forward_plan`], that the dispatcher in `conv.rs` follows and `bench forward --layers` prints.

use super::bf16::Bf16Kernel;
use super::geom::ConvGeom;
use super::simd::{self, Level};

/// How the CPU forward (and input gradient) is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algo {
    /// fp32 on the fastest algorithm for the geometry: the first-layer kernel, Winograd for 3×3 kernels on 8 or
    /// more input channels (F(3×3) or F(4×4) where they win, else F(2×2, 3×3)), im2col + gemm otherwise.
    #[default]
    Fp32,
    /// Always im2col + gemm.
    Im2col,
    /// As `Fp32`, in bf16 on this kernel (`--precision bf16`): the Winograd products (forward, input gradient,
    /// and the weight gradient from 256 channels) and the im2col forward run on it; the narrower im2col weight
    /// gradients round their factors to bf16 and sum in f32, the same arithmetic.
    Bf16(Bf16Kernel),
}

impl Algo {
    /// True when the geometry goes to a Winograd kernel (3×3, 8 or more input channels) under this algorithm.
    pub(super) fn use_winograd(self, g: &ConvGeom) -> bool {
        matches!(self, Algo::Fp32 | Algo::Bf16(_)) && g.c >= 8 && super::winograd_shared::applicable(g)
    }
}

/// The forward's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The AVX-512 kernel of a first layer (1 to 4 input channels).
    FirstConv,
    /// The direct bf16 convolution on this kernel.
    Direct(Bf16Kernel),
    /// Winograd F(2×2, 3×3), in f32 or bf16.
    WinogradF2,
    /// Winograd F(3×3, 3×3), f32.
    WinogradF3,
    /// Winograd F(4×4, 3×3), f32.
    WinogradF4,
    /// im2col + gemm, in f32 or bf16.
    Im2col,
}

/// A convolution's forward as it will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvPlan {
    pub forward: Forward,
    /// The bf16 kernel of its products; `None` for f32.
    pub bf16: Option<Bf16Kernel>,
    /// The vector level of the plain-Rust transforms (the hand-written AVX-512 kernels have their own check).
    pub simd: Level,
    /// Why this algorithm, in a few words.
    pub why: &'static str,
}

impl ConvPlan {
    /// "winograd F(2×2), fp32, transforms avx2: 3×3 on 8 or more channels".
    pub fn describe(&self) -> String {
        let name = match self.forward {
            Forward::FirstConv => "first-layer kernel",
            Forward::Direct(_) => "direct",
            Forward::WinogradF2 => "winograd F(2×2)",
            Forward::WinogradF3 => "winograd F(3×3)",
            Forward::WinogradF4 => "winograd F(4×4)",
            Forward::Im2col => "im2col + gemm",
        };
        let precision = self.bf16.map_or("fp32", |k| k.name());
        format!("{name}, {precision}, transforms {}: {}", self.simd.name(), self.why)
    }
}

/// The forward `algo` runs for `g` here: the first-layer kernel where it applies, the direct bf16 convolution
/// where it is chosen for the kernel, Winograd for 3×3 on 8 or more channels (F(3×3) or F(4×4) in f32 where they
/// win), im2col + gemm otherwise.
pub fn forward_plan(algo: Algo, g: &ConvGeom) -> ConvPlan {
    let bf16 = match algo {
        Algo::Bf16(k) => Some(k),
        _ => None,
    };
    let plan = |forward, why| ConvPlan {
        forward,
        bf16,
        simd: simd::level(),
        why,
    };
    if algo == Algo::Im2col {
        return plan(Forward::Im2col, "im2col asked for");
    }
    if super::first_conv::applicable(g) {
        return plan(Forward::FirstConv, "3×3 on 1–4 input channels, AVX-512");
    }
    if let Some(kernel) = bf16.filter(|&k| super::direct::chosen(k, g)) {
        return plan(
            Forward::Direct(kernel),
            "3×3 on multiples of 16 channels, chosen for this kernel",
        );
    }
    if !algo.use_winograd(g) {
        return plan(Forward::Im2col, "not a 3×3 convolution on 8 or more input channels");
    }
    if bf16.is_some() {
        return plan(Forward::WinogradF2, "3×3 on 8 or more channels, bf16 products");
    }
    if super::winograd_f3::chosen(g) {
        return plan(Forward::WinogradF3, "3×3 with 9–18 outputs across, AVX-512");
    }
    if super::winograd_f4::chosen(g) {
        return plan(
            Forward::WinogradF4,
            "3×3 with 16 or more outputs across, AVX-512, weights within 16 MiB",
        );
    }
    plan(Forward::WinogradF2, "3×3 on 8 or more channels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_follows_the_geometry() {
        // A 1×1 convolution and a 3×3 one on too few channels: im2col; asked for: im2col.
        let one = ConvGeom::new(2, 64, 16, 16, 64, 1, 0);
        assert_eq!(forward_plan(Algo::Fp32, &one).forward, Forward::Im2col);
        let narrow = ConvGeom::new(2, 6, 16, 16, 8, 3, 1);
        assert_eq!(forward_plan(Algo::Fp32, &narrow).forward, Forward::Im2col);
        let wide = ConvGeom::new(2, 64, 8, 8, 64, 3, 1);
        assert_eq!(forward_plan(Algo::Im2col, &wide).forward, Forward::Im2col);
        // 3×3 on 64 channels at 8×8: Winograd F(2×2) (too small for F(3×3) and F(4×4)).
        let p = forward_plan(Algo::Fp32, &wide);
        assert_eq!((p.forward, p.bf16), (Forward::WinogradF2, None));
        assert!(p.describe().starts_with("winograd F(2×2), fp32"), "{}", p.describe());
        // The first layer's kernel needs AVX-512; without it the 3-channel layer is im2col.
        let first = ConvGeom::new(2, 3, 32, 32, 64, 3, 1);
        let expected = if simd::avx512_kernels() {
            Forward::FirstConv
        } else {
            Forward::Im2col
        };
        assert_eq!(forward_plan(Algo::Fp32, &first).forward, expected);
        // bf16 keeps F(2×2) on any width.
        let big = ConvGeom::new(2, 64, 32, 32, 64, 3, 1);
        let p = forward_plan(Algo::Bf16(Bf16Kernel::AmxEmulated), &big);
        assert_eq!(
            (p.forward, p.bf16),
            (Forward::WinogradF2, Some(Bf16Kernel::AmxEmulated))
        );
    }
}
