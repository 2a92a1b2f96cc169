//! Turning an RGB image on the 0–255 scale into the network's input: the preprocessing that the weights were
//! trained with.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// ImageNet statistics on RGB x/255 (torchvision, timm).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Keras' "caffe" mode: BGR, 0–255, minus these means (in BGR order).
pub const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// `out[c] = (pixel[src(c)] · scale − mean[c]) / std[c]`, with `src` the RGB or BGR order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub mode: PreprocessMode,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Channel order of the network input is BGR (Keras "caffe").
    pub bgr: bool,
}

/// The named modes of `--preprocess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreprocessMode {
    /// RGB, x/255, then ImageNet mean/std (torchvision and timm weights).
    Imagenet,
    /// RGB, x/255 only (the course's `rescale=1./255`).
    Rescale,
    /// BGR, 0–255, minus the ImageNet BGR means (Keras' original VGG16 weights).
    Caffe,
}

impl Preprocess {
    pub fn imagenet() -> Self {
        Self::normalize(IMAGENET_MEAN, IMAGENET_STD)
    }
    /// ImageNet-style normalisation with other statistics (from a timm `config.json`).
    pub fn normalize(mean: [f32; 3], std: [f32; 3]) -> Self {
        Preprocess {
            mode: PreprocessMode::Imagenet,
            scale: 1.0 / 255.0,
            mean,
            std,
            bgr: false,
        }
    }
    pub fn rescale() -> Self {
        Preprocess {
            mode: PreprocessMode::Rescale,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            bgr: false,
        }
    }
    pub fn caffe() -> Self {
        Preprocess {
            mode: PreprocessMode::Caffe,
            scale: 1.0,
            mean: CAFFE_MEAN_BGR,
            std: [1.0; 3],
            bgr: true,
        }
    }
    pub fn from_mode(mode: PreprocessMode) -> Self {
        match mode {
            PreprocessMode::Imagenet => Self::imagenet(),
            PreprocessMode::Rescale => Self::rescale(),
            PreprocessMode::Caffe => Self::caffe(),
        }
    }

    /// Replaces the scale factor (Keras' `rescale`, applied to the 0–255 pixels).
    pub fn with_scale(mut self, scale: f32) -> Result<Self> {
        if !scale.is_finite() || scale == 0.0 {
            return Err(Error::invalid(format!(
                "--rescale must be a finite non-zero number, got {scale}"
            )));
        }
        self.scale = scale;
        Ok(self)
    }

    /// Writes one HWC RGB image (0–255, `f32`) as CHW network input into `out` (`3 · h · w` values).
    pub fn hwc_to_chw(&self, hwc: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let hw = h * w;
        debug_assert_eq!(hwc.len(), 3 * hw);
        debug_assert_eq!(out.len(), 3 * hw);
        for c in 0..3 {
            let src = if self.bgr { 2 - c } else { c };
            let (a, b) = (self.scale / self.std[c], -self.mean[c] / self.std[c]);
            let plane = &mut out[c * hw..(c + 1) * hw];
            for (i, v) in plane.iter_mut().enumerate() {
                *v = hwc[i * 3 + src] * a + b;
            }
        }
    }

    /// Same for 8-bit pixels.
    pub fn hwc_u8_to_chw(&self, hwc: &[u8], h: usize, w: usize, out: &mut [f32]) {
        let hw = h * w;
        for c in 0..3 {
            let src = if self.bgr { 2 - c } else { c };
            let (a, b) = (self.scale / self.std[c], -self.mean[c] / self.std[c]);
            let plane = &mut out[c * hw..(c + 1) * hw];
            for (i, v) in plane.iter_mut().enumerate() {
                *v = hwc[i * 3 + src] as f32 * a + b;
            }
        }
    }

    /// Inverse of [`Self::hwc_to_chw`] for one pixel value of channel `c` (for previews).
    pub fn to_pixel(&self, c: usize, v: f32) -> f32 {
        (v * self.std[c] + self.mean[c]) / self.scale
    }

    /// One line for summaries and metadata.
    pub fn describe(&self) -> String {
        match self.mode {
            PreprocessMode::Imagenet => format!(
                "imagenet: RGB, x*{:.6}, mean {:?}, std {:?}",
                self.scale, self.mean, self.std
            ),
            PreprocessMode::Rescale => format!("rescale: RGB, x*{:.6}", self.scale),
            PreprocessMode::Caffe => format!("caffe: BGR, x*{}, minus {:?}", self.scale, self.mean),
        }
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Self::imagenet()
    }
}

/// Stacks same-sized RGB images into one NCHW tensor with this preprocessing.
pub fn batch_tensor(
    images: &[&image::RgbImage],
    pre: &Preprocess,
    device: &candle_core::Device,
) -> Result<candle_core::Tensor> {
    use rayon::prelude::*;
    let Some(first) = images.first() else {
        return Err(Error::invalid("empty batch"));
    };
    let (w, h) = (first.width() as usize, first.height() as usize);
    let per = 3 * h * w;
    let mut data = vec![0f32; images.len() * per];
    data.par_chunks_mut(per)
        .zip(images.par_iter())
        .try_for_each(|(out, img)| {
            if (img.width() as usize, img.height() as usize) != (w, h) {
                return Err(Error::invalid(format!(
                    "images of one batch differ in size: {}×{} and {w}×{h}",
                    img.width(),
                    img.height()
                )));
            }
            pre.hwc_u8_to_chw(img.as_raw(), h, w, out);
            Ok(())
        })?;
    Ok(candle_core::Tensor::from_vec(data, (images.len(), 3, h, w), device)?)
}

/// Reads mean/std from a timm `config.json` (`pretrained_cfg.mean/std`, or top-level `mean/std`).
pub fn from_timm_config(json: &serde_json::Value) -> Option<Preprocess> {
    let cfg = json.get("pretrained_cfg").unwrap_or(json);
    let arr = |key: &str| -> Option<[f32; 3]> {
        let v = cfg.get(key)?.as_array()?;
        if v.len() != 3 {
            return None;
        }
        let mut out = [0f32; 3];
        for (o, x) in out.iter_mut().zip(v) {
            *o = x.as_f64()? as f32;
        }
        Some(out)
    };
    Some(Preprocess::normalize(arr("mean")?, arr("std")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_maps_white_and_black() {
        let p = Preprocess::imagenet();
        let mut out = [0f32; 3];
        p.hwc_to_chw(&[255.0, 255.0, 255.0], 1, 1, &mut out);
        for c in 0..3 {
            assert!((out[c] - (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]).abs() < 1e-6);
        }
    }

    #[test]
    fn caffe_swaps_channels_and_subtracts_means() {
        let p = Preprocess::caffe();
        let mut out = [0f32; 3];
        p.hwc_to_chw(&[10.0, 20.0, 30.0], 1, 1, &mut out);
        assert_eq!(out, [30.0 - 103.939, 20.0 - 116.779, 10.0 - 123.68]);
    }

    #[test]
    fn timm_config_is_read() {
        let j: serde_json::Value =
            serde_json::json!({"pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}});
        let p = from_timm_config(&j).unwrap();
        assert_eq!(p.mean, [0.5; 3]);
        assert_eq!(p.std, [0.25; 3]);
    }
}
