//! `catdog evaluate` and `catdog predict` on a checkpoint.

use std::path::PathBuf;

use serde::Serialize;

use super::metrics::{self, Metrics};
use crate::data::folder::{ImageFolder, Sample};
use crate::data::loader::{Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::model::classifier::Classifier;
use crate::model::head::Head;
use crate::train::loss;

/// One image's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    /// Predicted class name.
    pub label: String,
    /// Class name → probability, in class order.
    pub probabilities: Vec<(String, f64)>,
    /// True class index (evaluation only).
    #[serde(skip)]
    pub truth: Option<usize>,
}

/// The result of `evaluate`.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub data: PathBuf,
    pub checkpoint: PathBuf,
    /// Mean cross-entropy (no penalty).
    pub loss: f64,
    #[serde(flatten)]
    pub metrics: Metrics,
    pub bad_files: Vec<(PathBuf, String)>,
    /// With test-time augmentation: how many looks, and the plain evaluation beside.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tta: Option<WithoutTta>,
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// Test-time augmentation: each image seen `looks` ways — itself, its horizontal flip, then `looks − 2` seeded
/// draws of `augment` — and the probabilities averaged (fastai's `tta`, Keras users' flip-and-average).
#[derive(Debug, Clone)]
pub struct Tta {
    pub looks: usize,
    pub augment: crate::data::augment::AugmentConfig,
}

/// The plain evaluation beside a test-time-augmented one (`evaluate --json` with `--tta N`).
#[derive(Debug, Clone, Serialize)]
pub struct WithoutTta {
    pub tta: usize,
    pub accuracy_without_tta: f64,
    pub loss_without_tta: f64,
    pub roc_auc_without_tta: Option<f64>,
}

fn loader_for(model: &Classifier, samples: Vec<Sample>, batch: usize) -> Result<Loader> {
    let m = &model.meta;
    let mut cfg = LoaderConfig::new(batch, m.size, m.preprocess);
    cfg.interpolation = m.interpolation;
    Loader::new(samples, cfg)
}

/// Per sample index, its probabilities (`None` when the model's output for it is not a finite number); and the
/// summed loss over the batches whose outputs were all finite.
type Scored = (Vec<(usize, Option<Vec<f64>>)>, f64);

/// Why no probability is reported for an image whose logits are NaN or infinite, for a model run in `precision`.
fn not_finite(precision: crate::kernels::Precision) -> String {
    let why = match precision {
        crate::kernels::Precision::Fp16 => {
            "an activation overflowed f16's ±65504 under --precision fp16: use --precision bf16 or fp32"
        }
        _ => "the checkpoint's weights are damaged or too large for float32",
    };
    format!("the model's output for this image is not a finite number: {why}")
}

/// Runs the model over the samples in order.
fn run(model: &Classifier, loader: &Loader, on_batch: &mut dyn FnMut(usize)) -> Result<Scored> {
    let device = model.base.device().clone();
    let mut out = Vec::new();
    let mut loss_sum = 0.0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let x = batch.images.to_device(&device)?;
        let logits = model.logits(&x)?;
        let finite: Vec<bool> = logits
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?
            .iter()
            .map(|row| row.iter().all(|v| v.is_finite()))
            .collect();
        if finite.iter().all(|f| *f) {
            let mean = loss::data_loss(&logits, &batch.labels)?.to_scalar::<f32>()? as f64;
            loss_sum += mean * batch.labels.len() as f64;
        }
        let p = Head::probabilities(&logits)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec2::<f64>()?;
        let kept = p.into_iter().zip(finite).map(|(p, ok)| ok.then_some(p));
        out.extend(batch.indices.iter().copied().zip(kept));
        on_batch(batch.indices.len());
    }
    Ok((out, loss_sum))
}

/// The batch with every image flipped left to right.
fn flipped(x: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    let w = x.dim(3)?;
    let reversed: Vec<u32> = (0..w as u32).rev().collect();
    let idx = candle_core::Tensor::from_vec(reversed, w, x.device())?;
    Ok(x.index_select(&idx, 3)?)
}

/// Each image's probabilities under the model, `None` when not finite.
fn look(model: &Classifier, x: &candle_core::Tensor) -> Result<Vec<Option<Vec<f64>>>> {
    let p = Head::probabilities(&model.logits(x)?)?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    Ok(p.into_iter()
        .map(|p| p.iter().all(|v| v.is_finite()).then_some(p))
        .collect())
}

/// The probabilities of every image of `samples` under `tta`, averaged over its looks, by sample index; `None`
/// for an image one of whose looks gave a non-finite output.
fn tta_probabilities(
    model: &Classifier,
    samples: &[Sample],
    batch: usize,
    tta: &Tta,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<(usize, Option<Vec<f64>>)>> {
    let device = model.base.device().clone();
    let mut sums: Vec<(usize, Option<Vec<f64>>)> = vec![(0, None); samples.len()];
    let mut add = |i: usize, p: Option<Vec<f64>>| {
        let (count, sum) = &mut sums[i];
        *sum = match (sum.take(), p) {
            (Some(s), Some(p)) => Some(s.iter().zip(&p).map(|(a, b)| a + b).collect()),
            (None, Some(p)) if *count == 0 => Some(p),
            _ => None,
        };
        *count += 1;
    };
    for b in loader_for(model, samples.to_vec(), batch)?.epoch(0) {
        let b = b?;
        let x = b.images.to_device(&device)?;
        let mut views = vec![look(model, &x)?];
        if tta.looks > 1 {
            views.push(look(model, &flipped(&x)?)?);
        }
        for view in views {
            b.indices.iter().zip(view).for_each(|(&i, p)| add(i, p));
        }
        on_batch(b.indices.len());
    }
    let mut cfg = LoaderConfig::new(batch, model.meta.size, model.meta.preprocess);
    cfg.interpolation = model.meta.interpolation;
    cfg.augment = Some(tta.augment);
    let drawn = Loader::new(samples.to_vec(), cfg)?;
    for draw in 2..tta.looks {
        for b in drawn.epoch(draw) {
            let b = b?;
            let view = look(model, &b.images.to_device(&device)?)?;
            b.indices.iter().zip(view).for_each(|(&i, p)| add(i, p));
        }
    }
    let looks = tta.looks.max(1);
    Ok(sums
        .into_iter()
        .enumerate()
        .filter(|(_, (count, _))| *count > 0)
        .map(|(i, (count, sum))| {
            let whole = sum.filter(|_| count == looks);
            (i, whole.map(|s| s.iter().map(|v| v / looks as f64).collect()))
        })
        .collect())
}

/// Mean cross-entropy of probabilities against the true labels (the loss of averaged predictions).
fn probability_loss(probs: &[Vec<f64>], labels: &[usize]) -> f64 {
    let total: f64 = probs.iter().zip(labels).map(|(p, &l)| -p[l].max(1e-12).ln()).sum();
    total / labels.len().max(1) as f64
}

fn prediction(model: &Classifier, path: PathBuf, p: Vec<f64>, truth: Option<usize>) -> Prediction {
    let classes = &model.meta.classes;
    let best = p
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
        .unwrap_or(0);
    Prediction {
        path,
        label: classes[best].clone(),
        probabilities: classes.iter().cloned().zip(p).collect(),
        truth,
    }
}

/// Evaluates a checkpoint on a labelled folder. The folder's classes must be the checkpoint's.
pub fn evaluate(
    model: &Classifier,
    folder: &ImageFolder,
    checkpoint: PathBuf,
    batch: usize,
    tta: Option<&Tta>,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Evaluation> {
    if folder.classes != model.meta.classes {
        return Err(Error::Data(format!(
            "{}: classes {:?} differ from the checkpoint's {:?}",
            folder.root.display(),
            folder.classes,
            model.meta.classes
        )));
    }
    let loader = loader_for(model, folder.samples.clone(), batch)?;
    let (scored, loss_sum) = run(model, &loader, on_batch)?;
    if scored.is_empty() {
        return Err(Error::Data(format!(
            "{}: none of the images could be read",
            folder.root.display()
        )));
    }
    let probs = finite_or_refused(scored, folder, &checkpoint)?;
    let labels: Vec<usize> = probs.iter().map(|(i, _)| folder.samples[*i].label).collect();
    let p: Vec<Vec<f64>> = probs.iter().map(|(_, p)| p.clone()).collect();
    let mut m = metrics::compute(&p, &labels, &model.meta.classes);
    let mut loss = loss_sum / labels.len() as f64;
    let mut probs = probs;
    let mut without = None;
    if let Some(t) = tta.filter(|t| t.looks > 1) {
        let looked = tta_probabilities(model, &folder.samples, batch, t, &mut |_| {})?;
        let looked = finite_or_refused(looked, folder, &checkpoint)?;
        let p: Vec<Vec<f64>> = looked.iter().map(|(_, p)| p.clone()).collect();
        let labels: Vec<usize> = looked.iter().map(|(i, _)| folder.samples[*i].label).collect();
        let plain = std::mem::replace(&mut m, metrics::compute(&p, &labels, &model.meta.classes));
        without = Some(WithoutTta {
            tta: t.looks,
            accuracy_without_tta: plain.accuracy,
            loss_without_tta: std::mem::replace(&mut loss, probability_loss(&p, &labels)),
            roc_auc_without_tta: plain.roc_auc,
        });
        probs = looked;
    }
    let predictions = probs
        .into_iter()
        .map(|(i, p)| prediction(model, folder.samples[i].path.clone(), p, Some(folder.samples[i].label)))
        .collect();
    Ok(Evaluation {
        data: folder.root.clone(),
        checkpoint,
        loss,
        metrics: m,
        bad_files: loader.bad_files(),
        tta: without,
        predictions,
    })
}

/// The probabilities of every image, or the error naming the checkpoint when some are not finite.
fn finite_or_refused(
    scored: Vec<(usize, Option<Vec<f64>>)>,
    folder: &ImageFolder,
    checkpoint: &std::path::Path,
) -> Result<Vec<(usize, Vec<f64>)>> {
    let broken: Vec<usize> = scored.iter().filter(|(_, p)| p.is_none()).map(|(i, _)| *i).collect();
    if let Some(first) = broken.first() {
        return Err(Error::Checkpoint {
            path: checkpoint.to_path_buf(),
            message: format!(
                "the model's output is not a finite number for {} of {} images (the first: {}): its weights are \
                 damaged or too large for float32, so no loss, accuracy or ROC-AUC can be reported",
                broken.len(),
                scored.len(),
                folder.samples[*first].path.display()
            ),
        });
    }
    Ok(scored.into_iter().filter_map(|(i, p)| Some((i, p?))).collect())
}

/// Predicts every file; unreadable ones come back as errors with the reason, in input order.
pub fn predict(
    model: &Classifier,
    files: &[PathBuf],
    batch: usize,
    tta: Option<&Tta>,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<std::result::Result<Prediction, (PathBuf, String)>>> {
    let samples: Vec<Sample> = files
        .iter()
        .map(|p| Sample {
            path: p.clone(),
            label: 0,
        })
        .collect();
    let loader = loader_for(model, samples, batch)?;
    let (mut scored, _) = run(model, &loader, on_batch)?;
    if let Some(t) = tta.filter(|t| t.looks > 1) {
        // The plain pass found the unreadable files; the looks replace the probabilities of the others.
        let samples: Vec<Sample> = files
            .iter()
            .map(|p| Sample {
                path: p.clone(),
                label: 0,
            })
            .collect();
        let looked: std::collections::HashMap<usize, Option<Vec<f64>>> =
            tta_probabilities(model, &samples, batch, t, &mut |_| {})?
                .into_iter()
                .collect();
        for (i, p) in scored.iter_mut() {
            if let Some(l) = looked.get(i) {
                *p = l.clone();
            }
        }
    }
    let mut by_index: Vec<Option<Option<Vec<f64>>>> = vec![None; files.len()];
    for (i, p) in scored {
        by_index[i] = Some(p);
    }
    let bad: std::collections::HashMap<PathBuf, String> = loader.bad_files().into_iter().collect();
    Ok(files
        .iter()
        .zip(by_index)
        .map(|(f, p)| match p {
            Some(Some(p)) => Ok(prediction(model, f.clone(), p, None)),
            Some(None) => Err((f.clone(), not_finite(model.base.precision()))),
            None => Err((f.clone(), bad.get(f).cloned().unwrap_or_else(|| "not read".into()))),
        })
        .collect())
}

/// A grid of misclassified images with their true and predicted class and probability.
/// The misclassified predictions with their loss (−ln of the true class's probability), highest loss first, at
/// most `max` (fastai's `plot_top_losses` order).
pub fn top_losses<'a>(classes: &[String], preds: &'a [Prediction], max: usize) -> Vec<(&'a Prediction, f64)> {
    let mut wrong: Vec<(&Prediction, f64)> = preds
        .iter()
        .filter_map(|p| {
            let truth = classes.get(p.truth?)?;
            if *truth == p.label {
                return None;
            }
            let p_true = p
                .probabilities
                .iter()
                .find(|(c, _)| c == truth)
                .map_or(0.0, |(_, v)| *v);
            Some((p, -(p_true.max(1e-12)).ln()))
        })
        .collect();
    wrong.sort_by(|a, b| b.1.total_cmp(&a.1));
    wrong.truncate(max);
    wrong
}

/// A grid of the misclassified images, highest loss first, each with its true and predicted class, the
/// predicted probability and the loss.
pub fn misclassified_grid(
    model: &Classifier,
    preds: &[Prediction],
    max: usize,
    gradcam: bool,
) -> Result<Option<image::RgbImage>> {
    let wrong = top_losses(&model.meta.classes, preds, max);
    if wrong.is_empty() {
        return Ok(None);
    }
    let size = model.meta.size.min(160);
    let cells: Vec<crate::plot::Cell> = wrong
        .iter()
        .filter_map(|(p, loss)| {
            let mut img = crate::data::loader::load_for_display(&p.path, size, model.meta.interpolation).ok()?;
            if gradcam {
                // What the model looked at for the class it wrongly predicted, at block5_conv3.
                let class = model.meta.classes.iter().position(|c| *c == p.label);
                let layer = crate::model::vgg16::layer_index("block5_conv3").ok()?;
                match crate::explain::gradcam::for_file(model, &p.path, layer, class) {
                    Ok(cam) => img = crate::explain::overlay::overlay(&img, &cam.map),
                    Err(e) => eprintln!("{}: no Grad-CAM ({e}); shown without", p.path.display()),
                }
            }
            let prob = p
                .probabilities
                .iter()
                .find(|(c, _)| *c == p.label)
                .map_or(0.0, |(_, v)| *v);
            Some(crate::plot::Cell {
                image: img,
                caption: vec![
                    format!("true {}", model.meta.classes[p.truth.unwrap_or(0)]),
                    format!("pred {} ({prob:.2}), loss {loss:.2}", p.label),
                    p.path
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ],
            })
        })
        .collect();
    let rows: Vec<Vec<crate::plot::Cell>> = {
        let mut rows = Vec::new();
        let mut it = cells.into_iter().peekable();
        while it.peek().is_some() {
            rows.push(it.by_ref().take(8).collect());
        }
        rows
    };
    let total = preds
        .iter()
        .filter(|p| p.truth.is_some_and(|t| model.meta.classes[t] != p.label))
        .count();
    Ok(Some(crate::plot::image_grid(
        &rows,
        Some(&format!(
            "misclassified: {} shown of {total}",
            rows.iter().map(|r| r.len()).sum::<usize>()
        )),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(name: &str, truth: usize, p_dog: f64) -> Prediction {
        Prediction {
            path: PathBuf::from(name),
            label: if p_dog > 0.5 { "dogs" } else { "cats" }.into(),
            probabilities: vec![("cats".into(), 1.0 - p_dog), ("dogs".into(), p_dog)],
            truth: Some(truth),
        }
    }

    #[test]
    fn misclassified_images_come_highest_loss_first() {
        let classes = vec!["cats".to_string(), "dogs".to_string()];
        // a: right; b: a cat at 0.6 dog (loss −ln 0.4); c: a dog at 0.05 dog (loss −ln 0.05); d: a cat at 0.9 dog.
        let preds = [
            pred("a", 0, 0.1),
            pred("b", 0, 0.6),
            pred("c", 1, 0.05),
            pred("d", 0, 0.9),
        ];
        let top = top_losses(&classes, &preds, 10);
        let names: Vec<&str> = top.iter().map(|(p, _)| p.path.to_str().unwrap()).collect();
        assert_eq!(names, ["c", "d", "b"]);
        assert!((top[0].1 - -(0.05f64.ln())).abs() < 1e-12);
        assert_eq!(top_losses(&classes, &preds, 2).len(), 2);
    }
}
