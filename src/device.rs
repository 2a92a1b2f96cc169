//! `--device cpu | cuda[:N] | auto`.

use candle_core::Device;

use crate::error::{Error, Result};

/// Parses `--device` and opens the device. `auto` picks CUDA device 0 when the `cuda` feature is built in and a GPU
/// answers, else the CPU.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    match s.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(cuda(0).unwrap_or(Device::Cpu)),
        _ => {
            let ordinal = if s == "cuda" {
                Some(0)
            } else {
                s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok())
            };
            match ordinal {
                Some(n) => cuda(n),
                None => Err(Error::invalid(format!(
                    "--device {s}: expected cpu, cuda, cuda:N or auto"
                ))),
            }
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(n: usize) -> Result<Device> {
    Device::new_cuda(n).map_err(|e| {
        Error::invalid(format!(
            "--device cuda:{n}: cannot open the GPU ({e}); use --device cpu"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(n: usize) -> Result<Device> {
    Err(Error::invalid(format!(
        "--device cuda:{n}: this catdog was built without CUDA; rebuild with `cargo build --release --features cuda` \
         (needs the CUDA toolkit) or use --device cpu"
    )))
}

/// The device as recorded in config.json: the flag as given, except `auto`, which becomes what it chose.
pub fn resolved_name(flag: &str, d: &Device) -> String {
    let flag = flag.trim().to_ascii_lowercase();
    if flag == "auto" {
        device_name(d)
    } else {
        flag
    }
}

/// A short name for logs and configs.
pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

/// The compute capability (major, minor) of a CUDA device; `None` for other devices or when the driver does not
/// say.
#[cfg(feature = "cuda")]
pub fn compute_capability(d: &Device) -> Option<(u32, u32)> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let Device::Cuda(dev) = d else { return None };
    let cu_device = dev.cuda_stream().context().cu_device();
    let attribute = |a| {
        // SAFETY: `cu_device` is the handle of a device whose context candle created and holds open (`dev` keeps
        // it alive); reading an attribute writes only the returned integer. candle reads these two the same way.
        unsafe { result::device::get_attribute(cu_device, a) }.ok()
    };
    let major = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Some((u32::try_from(major).ok()?, u32::try_from(minor).ok()?))
}

/// The compute capability of a CUDA device: never known in a build without CUDA.
#[cfg(not(feature = "cuda"))]
pub fn compute_capability(_d: &Device) -> Option<(u32, u32)> {
    None
}
