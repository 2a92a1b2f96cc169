//! Grad-CAM (Selvaraju et al. 2017) as Keras' example computes it: A = a conv layer's output as Keras names it
//! (`block5_conv3` is conv + ReLU); the score is the chosen class's logit (for a one-logit sigmoid head, z for
//! `classes[1]` and −z for `classes[0]`); each channel's weight is the spatial mean of ∂score/∂A; the map is
//! ReLU(Σ weights · A) divided by its maximum (a map of zeros stays zeros).

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::model::classifier::Classifier;
use crate::model::head::Head;
use crate::model::vgg16::LAYERS;

/// One image's class activation map.
#[derive(Debug, Clone)]
pub struct Cam {
    /// The class explained (index into the checkpoint's classes).
    pub class: usize,
    /// Its probability.
    pub probability: f64,
    /// H × W at the layer's resolution, in [0, 1].
    pub map: Vec<Vec<f32>>,
}

/// The Grad-CAM of each image of `x` (a preprocessed N × 3 × S × S batch) at `layer` (an index into [`LAYERS`]):
/// for `class`, or for each image's predicted class when `None`.
pub fn gradcam(model: &Classifier, x: &Tensor, layer: usize, class: Option<usize>) -> Result<Vec<Cam>> {
    if layer >= LAYERS.len() {
        return Err(Error::invalid(format!("layer {layer} is not a VGG16 layer")));
    }
    let base = &model.base;
    let a = Var::from_tensor(&base.forward_range(x, 0, layer + 1)?.detach())?;
    let features = base.forward_range(a.as_tensor(), layer + 1, LAYERS.len())?;
    let logits = model.head.forward(&features, None, base.compute())?;
    let probabilities = Head::probabilities(&logits)?.to_vec2::<f32>()?;
    let n_out = model.meta.head.n_out;
    let classes: Vec<usize> = (0..probabilities.len())
        .map(|i| class.unwrap_or_else(|| argmax(&probabilities[i])))
        .collect();
    // Σ over the batch of each image's score (the images do not mix, so the gradient is each one's own): the
    // logits weighted by ±1 for the one-logit head, by a one-hot row otherwise.
    let weights: Vec<f32> = classes
        .iter()
        .flat_map(|&c| match n_out {
            1 => vec![if c == 1 { 1.0 } else { -1.0 }],
            _ => (0..n_out).map(|k| if k == c { 1.0 } else { 0.0 }).collect(),
        })
        .collect();
    let weights = Tensor::from_vec(weights, (classes.len(), n_out), logits.device())?;
    let score = (logits.clone() * weights)?.sum_all()?;
    let grads = score.backward()?;
    let g = grads
        .get(a.as_tensor())
        .ok_or_else(|| Error::Other("no gradient reached the explained layer".into()))?;
    let maps = maps(a.as_tensor(), g)?;
    Ok(classes
        .into_iter()
        .zip(maps)
        .enumerate()
        .map(|(i, (class, map))| Cam {
            class,
            probability: f64::from(probabilities[i][class.min(probabilities[i].len() - 1)]),
            map,
        })
        .collect())
}

/// The Grad-CAM of one image file at `layer`, read and preprocessed as the checkpoint's run did.
pub fn for_file(model: &Classifier, path: &std::path::Path, layer: usize, class: Option<usize>) -> Result<Cam> {
    let meta = &model.meta;
    let limits = crate::data::decode::DecodeLimits::default();
    let img = crate::data::decode::load_resized(path, (meta.size, meta.size), meta.interpolation, &limits)?;
    let x = crate::data::preprocess::batch_tensor(&[&img], &meta.preprocess, model.base.device())?;
    Ok(gradcam(model, &x, layer, class)?.remove(0))
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// ReLU(Σ_c mean_hw(g_c) · A_c), divided by its maximum, per image.
fn maps(a: &Tensor, g: &Tensor) -> Result<Vec<Vec<Vec<f32>>>> {
    let (n, c, h, w) = a.dims4()?;
    let a = a.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let g = g.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let hw = h * w;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut cam = vec![0f64; hw];
        for ch in 0..c {
            let at = (i * c + ch) * hw;
            let weight = g[at..at + hw].iter().map(|&v| f64::from(v)).sum::<f64>() / hw as f64;
            for (m, &v) in cam.iter_mut().zip(&a[at..at + hw]) {
                *m += weight * f64::from(v);
            }
        }
        let top = cam.iter().fold(0f64, |m, &v| m.max(v));
        let scale = if top > 0.0 { 1.0 / top } else { 0.0 };
        out.push(
            cam.chunks(w)
                .map(|row| row.iter().map(|&v| (v.max(0.0) * scale) as f32).collect())
                .collect(),
        );
    }
    Ok(out)
}
