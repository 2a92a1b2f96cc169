//! Table cells: numbers as people read them (no "-0.0000", counts as integers, mean ± spread over the seeds).

use super::VariantResult;
use crate::tabular::dataset::Task;

pub(super) fn metric_name(t: Task) -> &'static str {
    match t {
        Task::Classification => "accuracy",
        Task::Regression => "mse",
    }
}

/// `v` with `decimals` decimals; "-" when not finite; never a negative zero.
pub(super) fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// The figure `key` of a variant as "mean ± sd" (just the mean for one seed).
pub(super) fn pm(v: &VariantResult, key: &str, decimals: usize) -> String {
    with_spread(v, key, |x| num(x, decimals))
}

/// A fraction as a percentage, "36.2% ± 1.0".
pub(super) fn percent(v: &VariantResult, key: &str) -> String {
    let mean = v.get(key).unwrap_or(f64::NAN);
    let m = format!("{}%", num(100.0 * mean, 1));
    match spread(v, key) {
        Some(sd) => format!("{m} ± {}", num(100.0 * sd, 1)),
        None => m,
    }
}

/// A count (epochs): an integer for one seed, the mean to one decimal ± sd over several.
pub(super) fn count(v: &VariantResult, key: &str) -> String {
    if v.seeds.len() > 1 {
        with_spread(v, key, |x| num(x, 1))
    } else {
        num(v.get(key).unwrap_or(f64::NAN), 0)
    }
}

fn spread(v: &VariantResult, key: &str) -> Option<f64> {
    if v.seeds.len() > 1 {
        v.sd.get(key).copied().filter(|s| s.is_finite())
    } else {
        None
    }
}

fn with_spread(v: &VariantResult, key: &str, f: impl Fn(f64) -> String) -> String {
    let mean = v.get(key).unwrap_or(f64::NAN);
    match spread(v, key) {
        Some(sd) if mean.is_finite() => format!("{} ± {}", f(mean), f(sd)),
        _ => f(mean),
    }
}

/// The variant with the best mean validation metric (highest accuracy, lowest MSE).
pub(super) fn best_by_val_metric(vs: &[VariantResult], task: Task) -> &VariantResult {
    let better = |a: &&VariantResult, b: &&VariantResult| match task {
        Task::Classification => a.val_metric.total_cmp(&b.val_metric),
        Task::Regression => b.val_metric.total_cmp(&a.val_metric),
    };
    vs.iter().max_by(better).expect("a lab has variants")
}

/// "over 3 seeds" / "with seed 0", for notes.
pub(super) fn seeds_phrase(seeds: &[u64]) -> String {
    match seeds {
        [one] => format!("with seed {one}"),
        many => format!("mean over {} seeds", many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_negative_zero_and_dashes_for_missing() {
        assert_eq!(num(-0.00001, 4), "0.0000");
        assert_eq!(num(-0.0, 1), "0.0");
        assert_eq!(num(-0.5, 1), "-0.5");
        assert_eq!(num(f64::NAN, 2), "-");
    }
}
