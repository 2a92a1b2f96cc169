//! Batches for training and evaluation: decode (or take from the in-memory cache) → augment → preprocess, in
//! parallel, with the next batches prepared in the background while the current one trains.
//!
//! Determinism: the epoch's order comes from `(seed, epoch)` and each image's augmentation from
//! `(seed, epoch, image index)`, so the batches are the same whatever the number of threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::augment::AugmentConfig;
use super::decode::{self, DecodeLimits, Interpolation};
use super::folder::Sample;
use super::preprocess::Preprocess;
use crate::error::{Error, Result};

/// How batches are made.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Square size images are resized to, pixels.
    pub size: u32,
    pub interpolation: Interpolation,
    /// Random augmentation (training only); `None` or an identity config means none.
    pub augment: Option<AugmentConfig>,
    /// Shuffle every epoch (training); evaluation keeps the folder order.
    pub shuffle: bool,
    pub seed: u64,
    pub preprocess: Preprocess,
    pub limits: DecodeLimits,
    /// Bytes of decoded, resized images kept in memory so that later epochs skip decoding (0 = off).
    pub cache_bytes: usize,
    /// Batches prepared ahead in the background.
    pub prefetch: usize,
    /// An unreadable image is an error instead of being skipped and reported.
    pub strict: bool,
}

impl LoaderConfig {
    pub fn new(batch_size: usize, size: u32, preprocess: Preprocess) -> Self {
        LoaderConfig {
            batch_size,
            size,
            interpolation: Interpolation::Nearest,
            augment: None,
            shuffle: false,
            seed: 0,
            preprocess,
            limits: DecodeLimits::default(),
            cache_bytes: 0,
            prefetch: 2,
            strict: false,
        }
    }
}

/// One batch: `images` is `N × 3 × size × size` f32 on the CPU, `labels` the class indices, `indices` the
/// positions of the images in the loader's sample list.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Vec<u32>,
    pub indices: Vec<usize>,
}

struct Shared {
    samples: Vec<Sample>,
    cache: Vec<OnceLock<Arc<[u8]>>>,
    cached_bytes: AtomicUsize,
    bad_flag: Vec<AtomicBool>,
    bad: Mutex<BTreeMap<usize, String>>,
}

/// A data set that yields batches.
#[derive(Clone)]
pub struct Loader {
    cfg: LoaderConfig,
    shared: Arc<Shared>,
}

/// splitmix64: derives independent seeds from (seed, epoch, index).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Loader {
    pub fn new(samples: Vec<Sample>, cfg: LoaderConfig) -> Result<Self> {
        if samples.is_empty() {
            return Err(Error::Data("no images to load".into()));
        }
        if cfg.batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        if let Some(a) = &cfg.augment {
            a.validate()?;
        }
        let n = samples.len();
        Ok(Loader {
            cfg,
            shared: Arc::new(Shared {
                samples,
                cache: (0..n).map(|_| OnceLock::new()).collect(),
                cached_bytes: AtomicUsize::new(0),
                bad_flag: (0..n).map(|_| AtomicBool::new(false)).collect(),
                bad: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    pub fn samples(&self) -> &[Sample] {
        &self.shared.samples
    }

    pub fn len(&self) -> usize {
        self.shared.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.samples.is_empty()
    }

    /// Images not known to be bad.
    pub fn good_len(&self) -> usize {
        self.len() - self.shared.bad.lock().expect("bad-file list").len()
    }

    /// Batches in an epoch (counting files found bad so far as gone).
    pub fn batches_per_epoch(&self) -> usize {
        self.good_len().div_ceil(self.cfg.batch_size)
    }

    /// Files that could not be read so far, with the reason.
    pub fn bad_files(&self) -> Vec<(PathBuf, String)> {
        self.shared
            .bad
            .lock()
            .expect("bad-file list")
            .iter()
            .map(|(&i, r)| (self.shared.samples[i].path.clone(), r.clone()))
            .collect()
    }

    /// Bytes of decoded images held in the cache.
    pub fn cached_bytes(&self) -> usize {
        self.shared.cached_bytes.load(Ordering::Relaxed)
    }

    /// True when the batches are the same every epoch (no augmentation, no shuffle).
    pub fn deterministic(&self) -> bool {
        !self.cfg.shuffle && self.augmenting().is_none()
    }

    fn augmenting(&self) -> Option<&AugmentConfig> {
        self.cfg.augment.as_ref().filter(|a| !a.is_identity())
    }

    /// The decoded, resized image of sample `i` (from the cache when it is there).
    pub fn image(&self, i: usize) -> Result<Arc<[u8]>> {
        let sh = &self.shared;
        if let Some(img) = sh.cache[i].get() {
            return Ok(img.clone());
        }
        let s = self.cfg.size;
        let img = decode::load_resized(&sh.samples[i].path, (s, s), self.cfg.interpolation, &self.cfg.limits)?;
        let data: Arc<[u8]> = Arc::from(img.into_raw());
        let len = data.len();
        let budget = self.cfg.cache_bytes;
        if budget > 0
            && sh
                .cached_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c + len <= budget).then_some(c + len)
                })
                .is_ok()
            && sh.cache[i].set(data.clone()).is_err()
        {
            sh.cached_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        Ok(data)
    }

    /// Sample `i` as network input (CHW) for `epoch`: decoded, augmented with its own seeded draw, preprocessed.
    /// Also returns the transform that was applied.
    pub fn prepare(&self, i: usize, epoch: usize, out: &mut [f32]) -> Result<Option<super::augment::Transform>> {
        let raw = self.image(i)?;
        let s = self.cfg.size as usize;
        match self.augmenting() {
            None => {
                self.cfg.preprocess.hwc_u8_to_chw(&raw, s, s, out);
                Ok(None)
            }
            Some(aug) => {
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(mix(mix(self.cfg.seed ^ 0xA5A5) ^ mix(epoch as u64) ^ i as u64));
                let t = aug.sample(&mut rng, s, s);
                let src: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
                let mut dst = vec![0f32; src.len()];
                t.apply(&src, s, s, &mut dst);
                self.cfg.preprocess.hwc_to_chw(&dst, s, s, out);
                Ok(Some(t))
            }
        }
    }

    /// The order of an epoch: all images not known to be bad, shuffled with `(seed, epoch)` when shuffling.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len())
            .filter(|&i| !self.shared.bad_flag[i].load(Ordering::Relaxed))
            .collect();
        if self.cfg.shuffle {
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
                mix(self.cfg.seed) ^ mix(epoch as u64 + 1),
            ));
        }
        idx
    }

    /// Records sample `i` as unreadable: it is left out of later epochs and listed by [`Self::bad_files`].
    pub fn mark_bad(&self, i: usize, reason: String) {
        self.shared.bad_flag[i].store(true, Ordering::Relaxed);
        self.shared
            .bad
            .lock()
            .expect("bad-file list")
            .entry(i)
            .or_insert(reason);
    }

    /// Builds one batch from the given sample indices (in parallel). Unreadable images are left out and recorded
    /// (or are an error with `strict`).
    pub fn make_batch(&self, indices: &[usize], epoch: usize) -> Result<Option<Batch>> {
        let s = self.cfg.size as usize;
        let per = 3 * s * s;
        let mut data = vec![0f32; indices.len() * per];
        let results: Vec<Result<()>> = data
            .par_chunks_mut(per)
            .zip(indices.par_iter())
            .map(|(out, &i)| self.prepare(i, epoch, out).map(|_| ()))
            .collect();
        let mut keep = Vec::with_capacity(indices.len());
        for (k, (r, &i)) in results.into_iter().zip(indices).enumerate() {
            match r {
                Ok(()) => keep.push(k),
                Err(e) => {
                    if self.cfg.strict {
                        return Err(e);
                    }
                    self.mark_bad(i, decode::decode_error_reason(&e));
                }
            }
        }
        if keep.is_empty() {
            return Ok(None);
        }
        if keep.len() < indices.len() {
            let mut packed = Vec::with_capacity(keep.len() * per);
            for &k in &keep {
                packed.extend_from_slice(&data[k * per..(k + 1) * per]);
            }
            data = packed;
        }
        let idx: Vec<usize> = keep.iter().map(|&k| indices[k]).collect();
        let labels = idx.iter().map(|&i| self.shared.samples[i].label as u32).collect();
        Ok(Some(Batch {
            images: Tensor::from_vec(data, (idx.len(), 3, s, s), &Device::Cpu)?,
            labels,
            indices: idx,
        }))
    }

    /// The batches of one epoch, prepared in a background thread `prefetch` batches ahead. Keras keeps the last
    /// partial batch, and so does this.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// Like [`Self::epoch`], skipping the first `skip` batches (a resumed run continues mid-epoch).
    pub fn epoch_from(&self, epoch: usize, skip: usize) -> EpochIter {
        let order = self.order(epoch);
        let bs = self.cfg.batch_size;
        let (tx, rx) = sync_channel::<Result<Batch>>(self.cfg.prefetch.max(1));
        let me = self.clone();
        let handle = std::thread::spawn(move || {
            for chunk in order.chunks(bs).skip(skip) {
                match me.make_batch(chunk, epoch) {
                    Ok(Some(b)) => {
                        if tx.send(Ok(b)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        EpochIter {
            rx,
            _handle: Some(handle),
        }
    }
}

/// Iterator over an epoch's batches.
pub struct EpochIter {
    rx: Receiver<Result<Batch>>,
    _handle: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

/// Loads an image file for display (decode + resize) without any cache.
pub fn load_for_display(path: &std::path::Path, size: u32, interp: Interpolation) -> Result<RgbImage> {
    decode::load_resized(path, (size, size), interp, &DecodeLimits::default())
}
