//! Classification metrics: accuracy, confusion matrix, per-class precision/recall/F1, ROC-AUC.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Images of this class.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub classes: Vec<String>,
    pub images: usize,
    pub accuracy: f64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
    pub macro_f1: f64,
    /// Binary: AUC of the second class's probability; more classes: macro one-vs-rest. None when a class is absent.
    pub roc_auc: Option<f64>,
}

/// Area under the ROC curve of `scores` for `positive` labels (Mann–Whitney, ties counted half). `None` when a
/// class is absent or a score is not a finite number (NaN would sort as the largest score and look perfect).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || !scores.iter().all(|s| s.is_finite()) {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    let rank_sum: f64 = ranks.iter().zip(positive).filter(|(_, &p)| p).map(|(r, _)| r).sum();
    Some((rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos * n_neg) as f64)
}

/// Metrics from class probabilities (`probs[i][c]`) and true labels.
pub fn compute(probs: &[Vec<f64>], labels: &[usize], classes: &[String]) -> Metrics {
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (p, &l) in probs.iter().zip(labels) {
        let pred = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)
            .unwrap_or(0);
        confusion[l][pred] += 1;
    }
    let n = labels.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                class: classes[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let roc_auc = if k == 2 {
        let s: Vec<f64> = probs.iter().map(|p| p[1]).collect();
        let pos: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        roc_auc(&s, &pos)
    } else {
        let aucs: Option<Vec<f64>> = (0..k)
            .map(|c| {
                let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
                let pos: Vec<bool> = labels.iter().map(|&l| l == c).collect();
                roc_auc(&s, &pos)
            })
            .collect();
        aucs.map(|a| a.iter().sum::<f64>() / k as f64)
    };
    Metrics {
        classes: classes.to_vec(),
        images: n,
        accuracy: if n > 0 { correct as f64 / n as f64 } else { 0.0 },
        macro_f1: per_class.iter().map(|c| c.f1).sum::<f64>() / k.max(1) as f64,
        confusion,
        per_class,
        roc_auc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half_and_orders() {
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.6], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, f64::NAN], &[false, true]), None);
    }

    #[test]
    fn confusion_precision_recall() {
        let probs = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.6, 0.4], vec![0.3, 0.7]];
        let m = compute(&probs, &[0, 1, 1, 1], &["cats".into(), "dogs".into()]);
        assert_eq!(m.confusion, vec![vec![1, 0], vec![1, 2]]);
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.per_class[0].precision, 0.5);
        assert_eq!(m.per_class[1].recall, 2.0 / 3.0);
        assert_eq!(m.roc_auc, Some(1.0));
    }
}
