//! One event file: TFRecord-framed `Event`s appended and flushed as they come, so that TensorBoard shows a run
//! while it trains and a crash leaves every whole record readable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::crc32c::masked;
use super::proto;
use crate::error::{Error, Result};
use crate::protobuf::Message;

/// Event files made by this process, so that two made in one second get different names.
static FILES_MADE: AtomicUsize = AtomicUsize::new(0);

/// An event file being written.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn host() -> String {
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if clean.is_empty() {
        "catdog".into()
    } else {
        clean
    }
}

impl EventWriter {
    /// Makes `dir` and a new event file in it, named as TensorFlow names them
    /// (`events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2`), starting with the file-version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let n = FILES_MADE.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "events.out.tfevents.{}.{}.{}.{n}.v2",
            now() as u64,
            host(),
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::options()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        w.record(proto::file_version_event(now()).bytes())?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar (`simple_value`, f32 as TensorBoard keeps them) at `step`.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) -> Result<()> {
        self.summary(step, &proto::scalar(tag, value as f32))
    }

    /// An RGB image at `step`, stored as PNG.
    pub fn image(&mut self, tag: &str, step: i64, img: &image::RgbImage) -> Result<()> {
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::Other(format!("{}: encoding {tag} as PNG: {e}", self.path.display())))?;
        self.summary(step, &proto::image(tag, img.height(), img.width(), &png))
    }

    /// Markdown for the text plugin at `step`.
    pub fn text(&mut self, tag: &str, step: i64, markdown: &str) -> Result<()> {
        self.summary(step, &proto::text(tag, markdown))
    }

    fn summary(&mut self, step: i64, summary: &Message) -> Result<()> {
        self.record(proto::summary_event(now(), step, summary).bytes())
    }

    /// TFRecord framing: length (u64 LE), its masked CRC-32C, the data, the data's masked CRC-32C.
    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut frame = Vec::with_capacity(data.len() + 16);
        frame.extend_from_slice(&len);
        frame.extend_from_slice(&masked(&len).to_le_bytes());
        frame.extend_from_slice(data);
        frame.extend_from_slice(&masked(data).to_le_bytes());
        self.out.write_all(&frame).map_err(|e| Error::io(&self.path, e))
    }

    /// Writes what is buffered to the file, so that TensorBoard sees it.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}
