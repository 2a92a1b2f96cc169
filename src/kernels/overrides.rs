//! The environment's say in which kernels run: every `CATDOG_*` kernel switch, read once and checked together.
//! `catdog` reads them at start-up and refuses a bad value (exit 2) before any work; the kernels then ask
//! [`KernelOverrides::current`] instead of reading the environment where they are. Documented in
//! docs/environment.md.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// `CATDOG_SIMD`: the widest vector level the plain-Rust kernels may use (never wider than the CPU has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdSwitch {
    Generic,
    Avx2,
    Avx512,
}

/// `CATDOG_BF16`: hide the bf16 kernels, or skip AMX for AVX512-BF16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Switch {
    Off,
    Avx512,
}

/// `CATDOG_BF16_CONV`: the bf16 convolution for every layer that can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16ConvSwitch {
    Direct,
    Winograd,
}

/// `CATDOG_KERNELS`: catdog's CPU ops or only candle's (when `--kernels` is not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelsSwitch {
    Fast,
    Portable,
}

/// What the environment asks of the kernels; `None` where it says nothing (unset or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelOverrides {
    pub simd: Option<SimdSwitch>,
    pub bf16: Option<Bf16Switch>,
    pub bf16_conv: Option<Bf16ConvSwitch>,
    /// `CATDOG_CONV_CHUNK_KB`: the im2col column buffer per chunk, KiB (16 to 1,048,576).
    pub conv_chunk_kb: Option<usize>,
    pub kernels: Option<KernelsSwitch>,
}

/// The switches with the values each takes, for the refusal's message and docs.
pub const SWITCHES: [(&str, &str); 5] = [
    ("CATDOG_SIMD", "generic, avx2, avx512"),
    ("CATDOG_BF16", "off, avx512"),
    ("CATDOG_BF16_CONV", "direct, winograd"),
    ("CATDOG_CONV_CHUNK_KB", "KiB from 16 to 1048576"),
    ("CATDOG_KERNELS", "fast, portable"),
];

static CURRENT: OnceLock<KernelOverrides> = OnceLock::new();

impl KernelOverrides {
    /// Reads every switch from `var` (the environment: `|k| std::env::var(k).ok()`); a value a switch does not
    /// take is an error naming the switch and what it takes.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        fn pick<T: Copy>(var: &dyn Fn(&str) -> Option<String>, name: &str, values: &[(&str, T)]) -> Result<Option<T>> {
            let Some(raw) = var(name) else { return Ok(None) };
            let v = raw.trim().to_ascii_lowercase();
            if v.is_empty() {
                return Ok(None);
            }
            match values.iter().find(|(n, _)| *n == v) {
                Some((_, t)) => Ok(Some(*t)),
                None => Err(refused(name, &raw)),
            }
        }
        use Bf16ConvSwitch as C;
        use SimdSwitch as S;
        let conv_chunk_kb = match var("CATDOG_CONV_CHUNK_KB").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(kb) if (16..=1 << 20).contains(&kb) => Some(kb),
                _ => return Err(refused("CATDOG_CONV_CHUNK_KB", &raw)),
            },
        };
        Ok(KernelOverrides {
            simd: pick(
                &var,
                "CATDOG_SIMD",
                &[("generic", S::Generic), ("avx2", S::Avx2), ("avx512", S::Avx512)],
            )?,
            bf16: pick(
                &var,
                "CATDOG_BF16",
                &[("off", Bf16Switch::Off), ("avx512", Bf16Switch::Avx512)],
            )?,
            bf16_conv: pick(
                &var,
                "CATDOG_BF16_CONV",
                &[("direct", C::Direct), ("winograd", C::Winograd)],
            )?,
            conv_chunk_kb,
            kernels: pick(
                &var,
                "CATDOG_KERNELS",
                &[("fast", KernelsSwitch::Fast), ("portable", KernelsSwitch::Portable)],
            )?,
        })
    }

    /// The switches of this process: those [`check_env`] read at start-up, or, where nothing called it (the
    /// library used on its own), the environment read now, a bad value counting as unset.
    pub fn current() -> &'static KernelOverrides {
        CURRENT.get_or_init(|| Self::read(|k| std::env::var(k).ok()).unwrap_or_default())
    }
}

fn refused(name: &str, raw: &str) -> Error {
    let takes = SWITCHES.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v);
    Error::invalid(format!("{name}={}: use {takes}, or unset it", raw.escape_debug()))
}

/// Reads the kernel switches once, at start-up, refusing a value the kernels would otherwise ignore.
pub fn check_env() -> Result<()> {
    let read = KernelOverrides::read(|k| std::env::var(k).ok())?;
    // The first reading wins; a second call (the Python API runs commands in one process) finds the same values.
    let _ = CURRENT.set(read);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<KernelOverrides> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        KernelOverrides::read(|k| map.get(k).cloned())
    }

    #[test]
    fn every_switch_is_read_and_a_bad_value_is_refused_by_name() {
        assert_eq!(read(&[]).unwrap(), KernelOverrides::default());
        let all = read(&[
            ("CATDOG_SIMD", " AVX2 "),
            ("CATDOG_BF16", "off"),
            ("CATDOG_BF16_CONV", "winograd"),
            ("CATDOG_CONV_CHUNK_KB", "64"),
            ("CATDOG_KERNELS", "portable"),
        ])
        .unwrap();
        assert_eq!(
            all,
            KernelOverrides {
                simd: Some(SimdSwitch::Avx2),
                bf16: Some(Bf16Switch::Off),
                bf16_conv: Some(Bf16ConvSwitch::Winograd),
                conv_chunk_kb: Some(64),
                kernels: Some(KernelsSwitch::Portable),
            }
        );
        assert_eq!(read(&[("CATDOG_SIMD", "")]).unwrap().simd, None);
        for (name, bad) in [
            ("CATDOG_SIMD", "sse"),
            ("CATDOG_BF16", "amx"),
            ("CATDOG_BF16_CONV", "im2col"),
            ("CATDOG_CONV_CHUNK_KB", "8"),
            ("CATDOG_CONV_CHUNK_KB", "lots"),
            ("CATDOG_KERNELS", "im2col"),
        ] {
            let e = read(&[(name, bad)]).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("unset it"), "{name}={bad}: {e}");
        }
    }
}
