//! The frozen-prefix feature cache: when the training input is the same every epoch (no augmentation), the frozen
//! part of the network runs once per image for the whole run — block5_pool features for `extract`, the frozen
//! prefix's output (block4_pool for block5 fine-tuning) for `finetune` — and is kept in memory, or in a file
//! beside the run when it does not fit the memory budget.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::data::loader::Loader;
use crate::error::{Error, Result};
use crate::model::vgg16::Vgg16;

enum Store {
    Memory(Vec<f32>),
    File(SpillFile),
}

/// The cache file; removed when dropped, so also when building the cache fails half-way.
struct SpillFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Cached features of a loader's images, by sample index.
pub struct FeatureCache {
    /// `[C, H, W]` of one item.
    pub shape: [usize; 3],
    per: usize,
    valid: Vec<bool>,
    store: Store,
    /// Seconds spent building it.
    pub build_seconds: f64,
}

impl FeatureCache {
    /// Runs `model.forward_frozen` over every image of `loader` (which must not augment) and keeps the outputs.
    /// Unreadable images are recorded by the loader and left out. `label` ("train", "val") names the spill file,
    /// so that the caches of one run never share a file.
    pub fn build(
        label: &str,
        loader: &Loader,
        model: &Vgg16,
        budget_bytes: usize,
        spill_dir: &Path,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let start = Instant::now();
        let size = loader.config().size as usize;
        let (c, h, w) = model.output_shape(model.split().saturating_sub(1), size);
        let shape = if model.split() == 0 { [3, size, size] } else { [c, h, w] };
        let mut cache = Self::empty(label, loader.len(), shape, budget_bytes, spill_dir)?;
        for batch in loader.epoch(0) {
            let batch = batch?;
            let x = batch.images.to_device(model.device())?;
            let f = model
                .forward_frozen(&x)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (k, &i) in batch.indices.iter().enumerate() {
                cache.put(i, &f[k * cache.per..(k + 1) * cache.per])?;
            }
            on_batch(batch.indices.len());
        }
        cache.build_seconds = start.elapsed().as_secs_f64();
        Ok(cache)
    }

    /// A cache of `n` items of `shape` with no entry yet: in memory when it fits `budget_bytes`, else in a file
    /// in `spill_dir` named after `label`.
    pub(super) fn empty(
        label: &str,
        n: usize,
        shape: [usize; 3],
        budget_bytes: usize,
        spill_dir: &Path,
    ) -> Result<Self> {
        let per = shape.iter().product::<usize>();
        let bytes = n * per * 4;
        let store = if bytes <= budget_bytes {
            Store::Memory(vec![0f32; n * per])
        } else {
            std::fs::create_dir_all(spill_dir).map_err(|e| Error::io(spill_dir, e))?;
            let path = crate::run::RunPaths::new(spill_dir).feature_cache(label);
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            let spill = SpillFile {
                path,
                file: Mutex::new(file),
            };
            spill
                .file
                .lock()
                .expect("cache file lock")
                .set_len(bytes as u64)
                .map_err(|e| Error::io(&spill.path, e))?;
            Store::File(spill)
        };
        Ok(FeatureCache {
            shape,
            per,
            valid: vec![false; n],
            store,
            build_seconds: 0.0,
        })
    }

    /// Stores the features of item `i` (`row` holds one item's values).
    pub(super) fn put(&mut self, i: usize, row: &[f32]) -> Result<()> {
        if row.len() != self.per || i >= self.valid.len() {
            return Err(Error::Other(format!(
                "feature cache: item {i} of {} with {} values, expected {}",
                self.valid.len(),
                row.len(),
                self.per
            )));
        }
        let per = self.per;
        match &mut self.store {
            Store::Memory(v) => v[i * per..(i + 1) * per].copy_from_slice(row),
            Store::File(SpillFile { path, file }) => {
                let f = file.get_mut().expect("cache file lock");
                f.seek(SeekFrom::Start((i * per * 4) as u64))
                    .map_err(|e| Error::io(&*path, e))?;
                let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                f.write_all(&bytes).map_err(|e| Error::io(&*path, e))?;
            }
        }
        self.valid[i] = true;
        Ok(())
    }

    /// True when the features are on disk.
    pub fn on_disk(&self) -> bool {
        matches!(self.store, Store::File(_))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.valid.len() * self.per * 4
    }

    pub fn is_valid(&self, i: usize) -> bool {
        self.valid.get(i).copied().unwrap_or(false)
    }

    /// Features of the given samples as `[N, C, H, W]` on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let mut data = Vec::with_capacity(indices.len() * self.per);
        for &i in indices {
            if !self.is_valid(i) {
                return Err(Error::Other(format!("feature cache has no entry for image {i}")));
            }
            match &self.store {
                Store::Memory(v) => data.extend_from_slice(&v[i * self.per..(i + 1) * self.per]),
                Store::File(SpillFile { path, file }) => {
                    let mut f = file.lock().expect("cache file lock");
                    f.seek(SeekFrom::Start((i * self.per * 4) as u64))
                        .map_err(|e| Error::io(path, e))?;
                    let mut bytes = vec![0u8; self.per * 4];
                    f.read_exact(&mut bytes).map_err(|e| Error::io(path, e))?;
                    data.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                }
            }
        }
        let [c, h, w] = self.shape;
        Ok(Tensor::from_vec(data, (indices.len(), c, h, w), &Device::Cpu)?.to_device(device)?)
    }
}
