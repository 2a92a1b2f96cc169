//! Which kernels run: `--kernels fast|portable` (or `CATDOG_KERNELS`), and the environment switches of the CPU
//! kernels, checked once at start-up.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which kernels run the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// catdog's CPU ops (f32): Winograd F(2×2, 3×3) for 3×3 kernels (F(4×4, 3×3) where it wins), im2col + gemm
    /// otherwise, fused pooling and optimizer updates. Off the CPU every op falls back to its portable twin.
    #[default]
    Fast,
    /// catdog's CPU ops with im2col + gemm only (for comparisons in benchmarks and tests).
    Im2col,
    /// Only candle's device-generic ops: exactly the graph that `--device cuda` runs.
    Portable,
}

impl Kernels {
    /// The environment variable that picks the kernels when no flag does (`fast` or `portable`).
    pub const ENV: &'static str = "CATDOG_KERNELS";

    /// The kernels for a run: the flag if given, else `CATDOG_KERNELS`, else fast; always portable off the CPU.
    pub fn resolve(flag: Option<Kernels>, device: &Device) -> Result<Kernels> {
        let chosen = match flag {
            Some(k) => k,
            None => Self::from_env()?.unwrap_or_default(),
        };
        Ok(chosen.for_device(device))
    }

    /// These kernels where they can run on `device`: portable off the CPU, whatever was asked for.
    pub fn for_device(self, device: &Device) -> Kernels {
        if device.is_cpu() {
            self
        } else {
            Kernels::Portable
        }
    }

    /// `CATDOG_KERNELS`, if set.
    pub fn from_env() -> Result<Option<Kernels>> {
        match std::env::var(Self::ENV) {
            Err(_) => Ok(None),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "fast" => Ok(Some(Kernels::Fast)),
                "portable" => Ok(Some(Kernels::Portable)),
                other => Err(Error::invalid(format!(
                    "{}={other}: expected fast or portable (or unset it)",
                    Self::ENV
                ))),
            },
        }
    }

    /// Whether catdog's own CPU ops may run (they still check device, dtype and geometry before they do).
    pub fn own_ops(self) -> bool {
        self != Kernels::Portable
    }

    /// The name written to config.json and shown in logs.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => "fast",
            Kernels::Im2col => "im2col",
            Kernels::Portable => "portable",
        }
    }
}

/// The kernel switches read from the environment, each with the values it takes (`CATDOG_KERNELS` has its own
/// check in [`Kernels::from_env`]). Empty or unset means the default.
const SWITCHES: [(&str, &[&str]); 3] = [
    ("CATDOG_SIMD", &["generic", "avx2", "avx512"]),
    ("CATDOG_BF16", &["off", "avx512"]),
    ("CATDOG_BF16_CONV", &["direct", "winograd"]),
];

/// Refuses, at start-up, a kernel switch whose value the kernels would ignore (they read the switches lazily and
/// fall back to the default on anything else): `CATDOG_SIMD`, `CATDOG_BF16`, `CATDOG_BF16_CONV`,
/// `CATDOG_CONV_CHUNK_KB` (16 to 1,048,576) and `CATDOG_KERNELS`.
pub fn check_env() -> crate::Result<()> {
    for (name, values) in SWITCHES {
        if let Ok(v) = std::env::var(name) {
            let t = v.trim().to_ascii_lowercase();
            if !t.is_empty() && !values.contains(&t.as_str()) {
                return Err(crate::Error::invalid(format!(
                    "{name}={}: use {}, or unset it",
                    v.escape_debug(),
                    values.join(", ")
                )));
            }
        }
    }
    if let Ok(v) = std::env::var("CATDOG_CONV_CHUNK_KB") {
        if !v.trim().parse::<usize>().is_ok_and(|kb| (16..=1 << 20).contains(&kb)) {
            return Err(crate::Error::invalid(format!(
                "CATDOG_CONV_CHUNK_KB={}: give KiB from 16 to 1048576, or unset it",
                v.escape_debug()
            )));
        }
    }
    Kernels::from_env().map(|_| ())
}
