//! Which vector instructions the CPU kernels may use, chosen at run time from CPUID (never by build flags that
//! would fail on another CPU), and a macro that compiles a kernel's plain Rust body once per level so that the
//! compiler vectorises it for AVX-512 or AVX2 where the CPU has them.

/// The widest instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Baseline x86-64 (SSE2) or another architecture.
    Generic,
    /// AVX2 + FMA (Haswell, Zen 1 and later).
    Avx2,
    /// AVX-512 F/BW/VL (Skylake-X, Ice Lake, Sapphire Rapids, Zen 4/5).
    Avx512,
}

impl Level {
    /// As `CATDOG_SIMD` names it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Generic => "generic",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// The level the CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Generic
}

/// The level `CATDOG_SIMD=generic|avx2|avx512` asks for, if any.
fn requested() -> Option<Level> {
    use super::overrides::{KernelOverrides, SimdSwitch};
    KernelOverrides::current().simd.map(|s| match s {
        SimdSwitch::Generic => Level::Generic,
        SimdSwitch::Avx2 => Level::Avx2,
        SimdSwitch::Avx512 => Level::Avx512,
    })
}

/// The level in use: AVX2 where the CPU has it, baseline otherwise; `CATDOG_SIMD=generic|avx2|avx512` picks
/// another (for comparisons and tests; a level the CPU lacks is never used).
///
/// AVX2 even on AVX-512 CPUs, because it measured faster: the compiler's AVX-512 code for these plain-Rust
/// transforms was slower than baseline code, AVX2's faster (docs/performance.md). The hand-written AVX-512
/// kernels have their own gate, [`avx512_kernels`].
pub fn level() -> Level {
    requested().unwrap_or(Level::Avx2).min(detected())
}

/// Whether the hand-written AVX-512 f32 kernels (the first convolution, the Winograd input transform, F(4×4) and
/// F(3×3)) may run: the CPU has AVX-512 and `CATDOG_SIMD` does not ask for a narrower level. So
/// `CATDOG_SIMD=avx2` (or `generic`) on an AVX-512 CPU runs what an AVX2 (or older) CPU runs, for the tests and
/// for comparisons. The bf16 kernels have their own switch (`CATDOG_BF16`).
pub fn avx512_kernels() -> bool {
    requested().unwrap_or(Level::Avx512).min(detected()) == Level::Avx512
}

/// `dispatch!(fn name(args…) => body);` defines `name`, which calls `body` (an `#[inline(always)]` function with
/// the same arguments) compiled for the widest [`level`]: the same code, vectorised by the compiler for AVX-512 or
/// AVX2 instead of baseline x86-64.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY (callers): only called when level() is Avx512, i.e. the CPU reports every feature enabled.
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY (callers): only called when level() is Avx2 or wider, so AVX2 and FMA are there.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match $crate::kernels::simd::level() {
                    // SAFETY: level() returns Avx512 only when detected() saw avx512f/bw/vl, avx2 and fma.
                    $crate::kernels::simd::Level::Avx512 => return unsafe { wide($($arg),*) },
                    // SAFETY: level() returns Avx2 only when detected() saw avx2 and fma.
                    $crate::kernels::simd::Level::Avx2 => return unsafe { narrow($($arg),*) },
                    $crate::kernels::simd::Level::Generic => {}
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use dispatch;
