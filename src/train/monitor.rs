//! The metric that decides the best checkpoint, early stopping and reduce-on-plateau: one typed value instead of
//! a string matched in several places.

use serde::{Deserialize, Serialize};

use super::early_stop::Mode;
use super::history::{EpochRecord, MONITORABLE};
use crate::error::{Error, Result};

/// A metric of [`EpochRecord`] and the direction in which it improves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitor {
    /// A name of [`MONITORABLE`].
    pub name: String,
    /// Higher is better.
    pub max: bool,
}

impl Monitor {
    /// `--monitor NAME` with `--es-mode`: a name of [`MONITORABLE`], or Keras 2's `val_acc` / `acc`.
    pub fn parse(name: &str, mode: Mode) -> Result<Monitor> {
        let name = canonical(name).ok_or_else(|| {
            Error::invalid(format!(
                "--monitor {name}: expected one of {} (val_acc and acc are accepted for val_accuracy and accuracy)",
                MONITORABLE.join(", ")
            ))
        })?;
        Ok(Monitor {
            max: mode.resolve(name) == Mode::Max,
            name: name.to_string(),
        })
    }

    /// Whether the metric needs validation data.
    pub fn needs_validation(&self) -> bool {
        self.name.starts_with("val_")
    }

    pub fn value(&self, r: &EpochRecord) -> Option<f64> {
        r.metric(&self.name)
    }

    /// Whether `value` beats `best` (any finite value beats none).
    pub fn better(&self, value: f64, best: Option<f64>) -> bool {
        if value.is_nan() {
            return false;
        }
        match best {
            None => true,
            Some(b) if self.max => value > b,
            Some(b) => value < b,
        }
    }
}

/// The accepted spelling of a metric name.
pub fn canonical(name: &str) -> Option<&'static str> {
    let name = match name {
        "val_acc" => "val_accuracy",
        "acc" => "accuracy",
        n => n,
    };
    MONITORABLE.iter().copied().find(|m| *m == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_2_aliases_and_directions() {
        assert_eq!(Monitor::parse("val_acc", Mode::Auto).unwrap().name, "val_accuracy");
        assert!(Monitor::parse("val_acc", Mode::Auto).unwrap().max);
        assert!(!Monitor::parse("val_loss", Mode::Auto).unwrap().max);
        let e = Monitor::parse("val_auc", Mode::Auto).unwrap_err().to_string();
        assert!(e.contains("val_loss, val_accuracy"), "{e}");
        let m = Monitor::parse("loss", Mode::Auto).unwrap();
        assert!(m.better(0.5, Some(0.6)) && !m.better(0.7, Some(0.6)) && m.better(1.0, None));
        assert!(!m.better(f64::NAN, None));
    }
}
