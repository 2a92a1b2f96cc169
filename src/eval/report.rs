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
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

fn loader_for(model: &Classifier, samples: Vec<Sample>, batch: usize) -> Result<Loader> {
    let m = &model.meta;
    let mut cfg = LoaderConfig::new(batch, m.size, m.preprocess);
    cfg.interpolation = m.interpolation;
    Loader::new(samples, cfg)
}

/// Runs the model over samples in order; returns per-sample probabilities and logits-based loss sum.
/// Probabilities per sample index, and the summed loss.
type Scored = (Vec<(usize, Vec<f64>)>, f64);

fn run(model: &Classifier, loader: &Loader, on_batch: &mut dyn FnMut(usize)) -> Result<Scored> {
    let device = model.base.device().clone();
    let mut out = Vec::new();
    let mut loss_sum = 0.0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let x = batch.images.to_device(&device)?;
        let logits = model.logits(&x)?;
        loss_sum += loss::data_loss(&logits, &batch.labels)?.to_scalar::<f32>()? as f64 * batch.labels.len() as f64;
        let p = Head::probabilities(&logits)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec2::<f64>()?;
        out.extend(batch.indices.iter().copied().zip(p));
        on_batch(batch.indices.len());
    }
    Ok((out, loss_sum))
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
    let (probs, loss_sum) = run(model, &loader, on_batch)?;
    if probs.is_empty() {
        return Err(Error::Data(format!(
            "{}: none of the images could be read",
            folder.root.display()
        )));
    }
    let labels: Vec<usize> = probs.iter().map(|(i, _)| folder.samples[*i].label).collect();
    let p: Vec<Vec<f64>> = probs.iter().map(|(_, p)| p.clone()).collect();
    let m = metrics::compute(&p, &labels, &model.meta.classes);
    let predictions = probs
        .into_iter()
        .map(|(i, p)| prediction(model, folder.samples[i].path.clone(), p, Some(folder.samples[i].label)))
        .collect();
    Ok(Evaluation {
        data: folder.root.clone(),
        checkpoint,
        loss: loss_sum / labels.len() as f64,
        metrics: m,
        bad_files: loader.bad_files(),
        predictions,
    })
}

/// Predicts every file; unreadable ones come back as errors with the reason, in input order.
pub fn predict(
    model: &Classifier,
    files: &[PathBuf],
    batch: usize,
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
    let (probs, _) = run(model, &loader, on_batch)?;
    let mut by_index: Vec<Option<Vec<f64>>> = vec![None; files.len()];
    for (i, p) in probs {
        by_index[i] = Some(p);
    }
    let bad: std::collections::HashMap<PathBuf, String> = loader.bad_files().into_iter().collect();
    Ok(files
        .iter()
        .zip(by_index)
        .map(|(f, p)| match p {
            Some(p) => Ok(prediction(model, f.clone(), p, None)),
            None => Err((f.clone(), bad.get(f).cloned().unwrap_or_else(|| "not read".into()))),
        })
        .collect())
}

/// A grid of misclassified images with their true and predicted class and probability.
pub fn misclassified_grid(model: &Classifier, preds: &[Prediction], max: usize) -> Result<Option<image::RgbImage>> {
    let wrong: Vec<&Prediction> = preds
        .iter()
        .filter(|p| p.truth.is_some_and(|t| model.meta.classes[t] != p.label))
        .take(max)
        .collect();
    if wrong.is_empty() {
        return Ok(None);
    }
    let size = model.meta.size.min(160);
    let cells: Vec<crate::plot::Cell> = wrong
        .iter()
        .filter_map(|p| {
            let img = crate::data::loader::load_for_display(&p.path, size, model.meta.interpolation).ok()?;
            let prob = p
                .probabilities
                .iter()
                .find(|(c, _)| *c == p.label)
                .map_or(0.0, |(_, v)| *v);
            Some(crate::plot::Cell {
                image: img,
                caption: vec![
                    format!("true {}", model.meta.classes[p.truth.unwrap_or(0)]),
                    format!("pred {} ({prob:.2})", p.label),
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
