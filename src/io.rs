//! Writes that never leave a half-written file: write to a temporary file beside the target, flush, rename.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{Error, Result};

/// `.<name>.<pid>.tmp` beside `path`: where its atomic write grows (run and fetch folders clean these up).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// What `path` is when it exists and is not a regular file (symbolic links followed): "a folder", "a FIFO (named
/// pipe)", "a device", "a socket"; `None` for a regular file or nothing. Opening a FIFO to read an image from it
/// would block until something writes to it.
pub fn not_a_file(path: &Path) -> Option<&'static str> {
    let kind = std::fs::metadata(path).ok()?.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
        if kind.is_block_device() || kind.is_char_device() {
            return Some("a device");
        }
    }
    Some("not a regular file")
}

/// Writes `bytes` to `path` atomically (temporary file + rename); creates the parent folder.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Writes named tensors and string metadata as one safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&candle_core::Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| Error::Other(format!("{}: cannot serialise tensors: {e}", path.display())))?;
    atomic_write(path, &bytes)
}

/// Writes a safetensors file of one f32 tensor `name` of `shape` whose little-endian values are the bytes of
/// `values` (a file written batch by batch, so that they never sit in memory at once), with `metadata`;
/// atomically. The header is padded with spaces to a multiple of 8 bytes, as the safetensors crate writes it.
pub fn write_f32_safetensors_from(
    path: &Path,
    name: &str,
    shape: &[usize],
    metadata: HashMap<String, String>,
    values: &Path,
) -> Result<()> {
    let bytes = shape.iter().product::<usize>() * 4;
    let have = std::fs::metadata(values).map_err(|e| Error::io(values, e))?.len();
    if have != bytes as u64 {
        return Err(Error::Other(format!(
            "{}: {have} bytes of values where the shape {shape:?} needs {bytes}",
            values.display()
        )));
    }
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    header.insert(
        name.into(),
        serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [0, bytes]}),
    );
    let mut header = serde_json::to_string(&header)?;
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&(header.len() as u64).to_le_bytes())?;
        f.write_all(header.as_bytes())?;
        std::io::copy(&mut std::fs::File::open(values)?, &mut f)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Writes JSON (pretty) atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    atomic_write(path, s.as_bytes())
}
