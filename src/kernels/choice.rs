//! Which kernels run: `--kernels fast|portable`, else `CATDOG_KERNELS`, else fast.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::overrides::{KernelOverrides, KernelsSwitch};
use crate::error::Result;

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
            None => KernelOverrides::current()
                .kernels
                .map_or_else(Kernels::default, Kernels::from),
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

impl From<KernelsSwitch> for Kernels {
    fn from(s: KernelsSwitch) -> Kernels {
        match s {
            KernelsSwitch::Fast => Kernels::Fast,
            KernelsSwitch::Portable => Kernels::Portable,
        }
    }
}
