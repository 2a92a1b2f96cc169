//! The learning-rate finder as fastai's `lr_find` runs it: the learning rate grows exponentially from a start to
//! an end over a number of steps, each step's loss is smoothed (an exponential moving average with β = 0.98,
//! debiased), and the sweep stops once the smoothed loss exceeds 4× its minimum. Two suggestions are read off the
//! smoothed curve after dropping its first 10% and last 5 points, as fastai does: `valley` (fastai's default since
//! 2.5: a point two-fifths into the longest run of falling losses) and `steepest` (where the loss falls fastest
//! per decade of learning rate).

use serde::Serialize;

/// β of the moving average.
const BETA: f64 = 0.98;
/// The sweep stops once the smoothed loss exceeds this many times its minimum.
const DIVERGED: f64 = 4.0;

/// `iters` learning rates from `start` to `end`, exponentially spaced (`start · (end/start)^(i/(iters−1))`).
pub fn schedule(start: f64, end: f64, iters: usize) -> Vec<f64> {
    let steps = iters.max(2) - 1;
    (0..iters)
        .map(|i| start * (end / start).powf(i as f64 / steps as f64))
        .collect()
}

/// The debiased exponential moving average of the losses, and the divergence test.
#[derive(Debug, Default)]
pub struct Smoother {
    average: f64,
    count: i32,
    best: f64,
    smoothed: Vec<f64>,
}

impl Smoother {
    /// Adds a step's loss; `false` once the sweep should stop (a non-finite loss, or a smoothed loss past 4× the
    /// lowest so far), in which case the loss is not kept.
    pub fn push(&mut self, loss: f64) -> bool {
        if !loss.is_finite() {
            return false;
        }
        self.count += 1;
        self.average = BETA * self.average + (1.0 - BETA) * loss;
        let smooth = self.average / (1.0 - BETA.powi(self.count));
        if self.count == 1 || smooth < self.best {
            self.best = smooth;
        }
        if smooth > DIVERGED * self.best {
            return false;
        }
        self.smoothed.push(smooth);
        true
    }

    /// The smoothed losses kept so far.
    pub fn smoothed(&self) -> &[f64] {
        &self.smoothed
    }
}

/// What the finder suggests, with the curve it read them from.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestions {
    /// fastai's default: the valley.
    pub suggestion: f64,
    pub steepest: f64,
    /// (learning rate, smoothed loss) of every step kept.
    pub points: Vec<(f64, f64)>,
}

/// The suggestions for raw `(lr, loss)` steps; `None` with fewer than 10 steps left after trimming.
pub fn suggest(steps: &[(f64, f64)]) -> Option<Suggestions> {
    let mut smoother = Smoother::default();
    for (_, loss) in steps {
        if !smoother.push(*loss) {
            break;
        }
    }
    let points: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| s.0)
        .zip(smoother.smoothed().iter().copied())
        .collect();
    let n = points.len();
    let (from, to) = (n / 10, n.saturating_sub(5));
    if to <= from + 10 {
        return None;
    }
    let window = &points[from..to];
    Some(Suggestions {
        suggestion: valley(window),
        steepest: steepest(window),
        points,
    })
}

/// fastai's `valley`: the longest run of decreasing losses (not necessarily contiguous steps), and the point
/// `⌊len/3⌋ + ⌊len/6⌋` steps into it.
pub fn valley(points: &[(f64, f64)]) -> f64 {
    let n = points.len();
    let mut lds = vec![1i64; n];
    // fastai's arithmetic, signed: a run that starts at the first point has start −1.
    let (mut start, mut end) = (0i64, 0usize);
    for i in 1..n {
        for j in 0..i {
            if points[i].1 < points[j].1 && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[end] < lds[i] {
                end = i;
                start = end as i64 - lds[end];
            }
        }
    }
    let sections = (end as i64 - start) as f64 / 3.0;
    let idx = start + sections as i64 + (sections / 2.0) as i64;
    points[idx.clamp(0, n as i64 - 1) as usize].0
}

/// fastai's `steepest`: the learning rate where the loss falls fastest against log(lr).
pub fn steepest(points: &[(f64, f64)]) -> f64 {
    let slope = |w: &[(f64, f64)]| (w[1].1 - w[0].1) / (w[1].0.ln() - w[0].0.ln());
    let best = points
        .windows(2)
        .enumerate()
        .min_by(|a, b| slope(a.1).total_cmp(&slope(b.1)))
        .map_or(0, |(i, _)| i);
    points[best].0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loss that is flat (1.0) up to 1e-5, falls steepest around 1e-3 (a logistic in log10 lr centred there),
    /// bottoms out at 0.1 near 1e-2, and explodes past it.
    fn synthetic(lr: f64) -> f64 {
        let x = lr.log10();
        let fall = 1.0 - 0.9 / (1.0 + (-(x + 3.0) * 3.0).exp());
        if x > -1.5 {
            fall * 10f64.powf((x + 1.5) * 4.0)
        } else {
            fall
        }
    }

    #[test]
    fn the_schedule_is_exponential_from_start_to_end() {
        let s = schedule(1e-7, 10.0, 100);
        assert_eq!(s.len(), 100);
        assert!((s[0] - 1e-7).abs() < 1e-20 && (s[99] - 10.0).abs() < 1e-9);
        assert!((s[1] / s[0] - s[50] / s[49]).abs() < 1e-9, "a constant ratio");
    }

    #[test]
    fn the_sweep_stops_once_the_smoothed_loss_is_four_times_its_minimum() {
        let mut s = Smoother::default();
        assert!(s.push(1.0) && s.push(0.5));
        assert!(!s.push(f64::NAN));
        let mut s = Smoother::default();
        let kept = schedule(1e-7, 10.0, 100)
            .into_iter()
            .take_while(|lr| s.push(synthetic(*lr)))
            .count();
        assert!(
            (60..100).contains(&kept),
            "{kept}: stops in the explosion, not before the valley"
        );
    }

    #[test]
    fn the_suggestions_land_where_the_synthetic_loss_falls() {
        let steps: Vec<(f64, f64)> = schedule(1e-7, 10.0, 100)
            .into_iter()
            .map(|lr| (lr, synthetic(lr)))
            .collect();
        let s = suggest(&steps).unwrap();
        // The steepest fall of the smoothed curve lags the raw one's 1e-3 by the average's delay: a few steps.
        assert!((1e-3..=1e-2).contains(&s.steepest), "steepest {}", s.steepest);
        // The valley lies inside the fall, between its start and its bottom.
        assert!((1e-5..1e-2).contains(&s.suggestion), "valley {}", s.suggestion);
        // fastai's valley on a plain decreasing run: ⌊n/3⌋ + ⌊n/6⌋ steps in.
        let falling: Vec<(f64, f64)> = (0..30).map(|i| (i as f64 + 1.0, 30.0 - i as f64)).collect();
        assert_eq!(valley(&falling), 15.0);
        assert!(suggest(&steps[..12]).is_none(), "too few steps to suggest anything");
    }
}
