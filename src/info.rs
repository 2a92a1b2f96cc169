//! `catdog info`: what this catdog is and what it finds on this machine — the version and build features, the CPU
//! and what the kernels use of it, the kernel each precision would run, threads, CUDA, and the hub settings (cache,
//! endpoint, proxy, whether a token was found; never the token). What a bug report needs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::kernels::amx::{self, Amx};
use crate::kernels::{simd, Kernels, Precision};

/// Everything `catdog info` reports (`--json` prints this; its keys are stable).
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub version: String,
    /// Cargo features built in (`cuda`, `cudnn`).
    pub features: Vec<&'static str>,
    pub cpu: Cpu,
    /// The kernel each precision runs on the CPU, with the reason where bf16 falls back.
    pub kernels: KernelChoice,
    /// Worker threads (`--threads`, else every core).
    pub threads: usize,
    pub cuda: Cuda,
    pub hf_cache: PathBuf,
    pub hf_endpoint: String,
    pub hf_offline: bool,
    /// A token was found (`HF_TOKEN` or the token file). Its value is never reported.
    pub token_found: bool,
    /// Why the token found cannot be used, if so.
    pub token_problem: Option<String>,
    /// The proxy requests to the endpoint go through, with any password masked.
    pub proxy: Option<String>,
    /// The default data folder (`data/dogs-vs-cats`) as it is now.
    pub default_data: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub model: String,
    pub cores: usize,
    pub avx2: bool,
    pub avx512: bool,
    pub avx512_bf16: bool,
    /// "ready" (checked and in use), "absent", or "refused: why" (e.g. Linux did not grant the tile permission).
    pub amx: String,
    /// The vector level the portable-Rust kernels are compiled for here (`CATDOG_SIMD` may lower it).
    pub simd: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelChoice {
    pub fp32: String,
    pub bf16: String,
    pub bf16_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cuda {
    pub built: bool,
    /// GPUs that answered (0 when not built).
    pub devices: usize,
    /// Per GPU, in order: its compute capability ("7.5", or "unknown") and what `--precision auto` runs on it.
    pub gpus: Vec<Gpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub compute_capability: String,
    pub auto_precision: &'static str,
}

impl Gpu {
    pub(crate) fn of(cc: Option<(u32, u32)>) -> Gpu {
        Gpu {
            compute_capability: cc.map_or("unknown".into(), |(major, minor)| format!("{major}.{minor}")),
            auto_precision: crate::kernels::precision::gpu_auto(cc).0.name(),
        }
    }
}

/// Gathers the report. It asks the hub nothing and reads no weights.
pub fn gather() -> Info {
    let endpoint = crate::hub::hub_endpoint();
    let token = crate::hub::hf_token();
    Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        features: [("cuda", cfg!(feature = "cuda")), ("cudnn", cfg!(feature = "cudnn"))]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect(),
        cpu: cpu(),
        kernels: kernels(),
        threads: rayon::current_num_threads(),
        cuda: {
            let gpus = cuda_gpus();
            Cuda {
                built: cfg!(feature = "cuda"),
                devices: gpus.len(),
                gpus,
            }
        },
        hf_cache: crate::hub::hf_cache_dir(),
        hf_offline: crate::hub::hub_offline(),
        token_found: matches!(token, Ok(Some(_)) | Err(_)),
        token_problem: token.err(),
        proxy: crate::hub::proxy_for(&endpoint, &|k| std::env::var(k).ok()).map(|p| masked(&p)),
        hf_endpoint: endpoint,
        default_data: data_state(Path::new(crate::data::fetch::DEFAULT_FOLDER)),
    }
}

fn cpu() -> Cpu {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let detected = simd::detected();
    Cpu {
        model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        avx2: detected >= simd::Level::Avx2,
        avx512: detected >= simd::Level::Avx512,
        avx512_bf16: crate::kernels::bf16::available()
            .0
            .contains(&crate::kernels::bf16::Bf16Kernel::Avx512Bf16),
        amx: match amx::status() {
            Amx::Ready => "ready".into(),
            Amx::Absent => "absent".into(),
            Amx::Refused(why) => format!("refused: {why}"),
        },
        simd: format!("{:?}", simd::level()).to_ascii_lowercase(),
    }
}

fn kernels() -> KernelChoice {
    let fp32 = if simd::avx512_kernels() {
        "Winograd F(4×4)/F(3×3) on AVX-512".to_string()
    } else {
        format!(
            "Winograd F(2×2), {}",
            format!("{:?}", simd::level()).to_ascii_lowercase()
        )
    };
    let bf16 = Precision::Bf16.resolve(&candle_core::Device::Cpu, Kernels::Fast);
    KernelChoice {
        fp32,
        bf16: bf16.kernel.to_string(),
        bf16_note: bf16.notice,
    }
}

/// The GPUs that answer, in order.
fn cuda_gpus() -> Vec<Gpu> {
    (0..16)
        .map_while(|n| crate::device::parse_device(&format!("cuda:{n}")).ok())
        .map(|d| Gpu::of(crate::device::compute_capability(&d)))
        .collect()
}

/// A proxy URL with its password replaced by `***`.
fn masked(proxy: &str) -> String {
    let (scheme, rest) = proxy.split_once("://").map_or(("", proxy), |(s, r)| (s, r));
    let shown = match rest.rsplit_once('@') {
        Some((creds, host)) => {
            let user = creds.split(':').next().unwrap_or("");
            format!("{user}:***@{host}")
        }
        None => rest.to_string(),
    };
    if scheme.is_empty() {
        shown
    } else {
        format!("{scheme}://{shown}")
    }
}

/// "missing", "complete: N images (catdog-manifest.json)", "half-written: a fetch was interrupted", or "present,
/// without a manifest".
fn data_state(dir: &Path) -> String {
    use crate::data::fetch::{unfinished, MANIFEST};
    if !dir.exists() {
        return format!("{}: missing (catdog data fetch gets it)", dir.display());
    }
    if unfinished(dir) {
        return format!(
            "{}: half-written (a fetch was interrupted; run it again)",
            dir.display()
        );
    }
    let manifest = std::fs::read_to_string(dir.join(MANIFEST))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    match manifest.and_then(|m| m["files"].as_array().map(Vec::len)) {
        Some(n) => format!("{}: {n} images ({MANIFEST})", dir.display()),
        None => format!("{}: present, without a manifest", dir.display()),
    }
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let c = &self.cpu;
        let features = if self.features.is_empty() {
            "none".to_string()
        } else {
            self.features.join(", ")
        };
        writeln!(f, "catdog {} (features: {features})", self.version)?;
        writeln!(f, "cpu: {} ({} cores)", c.model, c.cores)?;
        writeln!(
            f,
            "  avx2 {}, avx-512 {}, avx512-bf16 {}, amx {}; kernels compiled for {}",
            yes(c.avx2),
            yes(c.avx512),
            yes(c.avx512_bf16),
            c.amx,
            c.simd
        )?;
        writeln!(f, "kernels: fp32 {}; bf16 {}", self.kernels.fp32, self.kernels.bf16)?;
        if let Some(note) = &self.kernels.bf16_note {
            writeln!(f, "  {note}")?;
        }
        writeln!(f, "threads: {}", self.threads)?;
        writeln!(
            f,
            "cuda: built {}, {} device(s)",
            yes(self.cuda.built),
            self.cuda.devices
        )?;
        for (n, gpu) in self.cuda.gpus.iter().enumerate() {
            writeln!(
                f,
                "  cuda:{n}: compute capability {}, --precision auto runs {}",
                gpu.compute_capability, gpu.auto_precision
            )?;
        }
        writeln!(f, "hub: {} (offline {})", self.hf_endpoint, yes(self.hf_offline))?;
        writeln!(f, "  cache {}", self.hf_cache.display())?;
        let token = match (&self.token_problem, self.token_found) {
            (Some(why), _) => format!("found but unusable: {why}"),
            (None, true) => "found".to_string(),
            (None, false) => "none".to_string(),
        };
        writeln!(f, "  token {token}")?;
        writeln!(f, "  proxy {}", self.proxy.as_deref().unwrap_or("none"))?;
        write!(f, "data: {}", self.default_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_password_is_masked() {
        assert_eq!(masked("socks5h://me:secret@gate:1080"), "socks5h://me:***@gate:1080");
        assert_eq!(masked("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(masked("me:pw@proxy:3128"), "me:***@proxy:3128");
    }
}
