//! A run's TensorBoard folder in Keras' layout: `train/` and `validation/` event files, with the epoch's
//! figures as `epoch_<name>` at step = epoch, so that TensorBoard draws each figure's two curves in one chart.

use std::path::Path;

use super::writer::EventWriter;
use crate::error::Result;

/// The two event files of a run.
pub struct RunBoard {
    train: EventWriter,
    validation: EventWriter,
}

impl RunBoard {
    /// New event files in `dir/train` and `dir/validation` (a resumed run adds files beside the earlier ones;
    /// TensorBoard reads them as one run).
    pub fn create(dir: &Path) -> Result<Self> {
        Ok(RunBoard {
            train: EventWriter::create(&dir.join("train"))?,
            validation: EventWriter::create(&dir.join("validation"))?,
        })
    }

    /// One epoch (`epoch` as Keras counts it: the first is 0): each `(name, value)` of `train` as
    /// `train/epoch_<name>`, of `validation` as `validation/epoch_<name>`; non-finite values are left out.
    pub fn epoch(&mut self, epoch: usize, train: &[(&str, f64)], validation: &[(&str, f64)]) -> Result<()> {
        for (writer, figures) in [(&mut self.train, train), (&mut self.validation, validation)] {
            for (name, value) in figures.iter().filter(|(_, v)| v.is_finite()) {
                writer.scalar(&format!("epoch_{name}"), epoch as i64, *value)?;
            }
            writer.flush()?;
        }
        Ok(())
    }

    /// An image (the curves, a grid) under `train/`.
    pub fn image(&mut self, tag: &str, step: usize, img: &image::RgbImage) -> Result<()> {
        self.train.image(tag, step as i64, img)?;
        self.train.flush()
    }

    /// Markdown (the run's configuration) under `train/`.
    pub fn text(&mut self, tag: &str, step: usize, markdown: &str) -> Result<()> {
        self.train.text(tag, step as i64, markdown)?;
        self.train.flush()
    }
}
