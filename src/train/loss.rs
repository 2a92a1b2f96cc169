//! Losses, the L1/L2 penalty and accuracy: shared by the image trainer and the tabular labs.

use candle_core::{DType, Tensor, Var, D};

use crate::error::Result;

/// Mean binary cross-entropy on logits in the stable form `max(z, 0) − z·y + log(1 + e^(−|z|))`.
/// `logits` is `[N, 1]` or `[N]`, `targets` `[N]` of 0/1 (f32).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let z = logits.flatten_all()?;
    let y = targets.flatten_all()?.to_dtype(z.dtype())?;
    let softplus = ((z.abs()?.neg()?.exp()? + 1.0)?).log()?;
    Ok(((z.relu()? - (&z * &y)?)? + softplus)?.mean_all()?)
}

/// Mean softmax cross-entropy: `logits` `[N, K]`, `targets` `[N]` class indices (u32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, &targets.to_dtype(DType::U32)?)?)
}

/// The data loss for the head's output: BCE for one logit, cross-entropy for several. `labels` are class indices.
pub fn data_loss(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let dev = logits.device();
    if logits.dim(D::Minus1)? == 1 {
        let y = Tensor::from_vec(labels.iter().map(|&l| l as f32).collect::<Vec<_>>(), labels.len(), dev)?;
        bce_with_logits(logits, &y)
    } else {
        cross_entropy(logits, &Tensor::from_vec(labels.to_vec(), labels.len(), dev)?)
    }
}

/// Keras regularizers: `l1·Σ|w| + l2·Σw²` over the kernels (not divided by the batch). `None` when both are 0.
pub fn penalty(kernels: &[Var], l1: f64, l2: f64) -> Result<Option<Tensor>> {
    if l1 == 0.0 && l2 == 0.0 {
        return Ok(None);
    }
    let mut total: Option<Tensor> = None;
    for k in kernels {
        let w = k.as_tensor();
        let mut term: Option<Tensor> = None;
        if l1 != 0.0 {
            term = Some((w.abs()?.sum_all()? * l1)?);
        }
        if l2 != 0.0 {
            let t = (w.sqr()?.sum_all()? * l2)?;
            term = Some(match term {
                Some(a) => (a + t)?,
                None => t,
            });
        }
        if let Some(t) = term {
            total = Some(match total {
                Some(a) => (a + t)?,
                None => t,
            });
        }
    }
    Ok(total)
}

/// Predicted class per row: `logit > 0` for one logit, argmax otherwise.
pub fn predicted(logits: &Tensor) -> Result<Vec<u32>> {
    if logits.dim(D::Minus1)? == 1 {
        Ok(logits
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|&z| u32::from(z > 0.0))
            .collect())
    } else {
        Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
    }
}

/// Number of correct predictions.
pub fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    Ok(predicted(logits)?.iter().zip(labels).filter(|(p, l)| p == l).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bce_is_stable_for_large_logits_and_matches_the_naive_form() {
        let z = Tensor::new(&[0.3f32, -1.2, 80.0, -80.0], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1.0f32, 0.0, 1.0, 0.0], &Device::Cpu).unwrap();
        let l = bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap();
        let naive = |z: f64, y: f64| {
            let p = 1.0 / (1.0 + (-z).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        };
        let expect = (naive(0.3, 1.0) + naive(-1.2, 0.0)) / 4.0; // the ±80 terms are ~0
        assert!((l as f64 - expect).abs() < 1e-6, "{l} vs {expect}");
        assert!(l.is_finite());
    }

    #[test]
    fn penalty_is_keras_l1_plus_l2() {
        let w = Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0], [0.5, 0.0]], &Device::Cpu).unwrap()).unwrap();
        let p = penalty(&[w], 0.1, 0.01).unwrap().unwrap().to_scalar::<f32>().unwrap();
        assert!((p - (0.1 * 3.5 + 0.01 * 5.25)).abs() < 1e-6);
    }
}
