//! Learning-rate schedules, evaluated per training step.

use crate::choice::declare_choice;
use std::f64::consts::PI;

declare_choice! {
    /// How the learning rate moves over a run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Schedule {
        #[default]
        Constant = "constant":
            "The base learning rate throughout",
        Cosine = "cosine":
            "Cosine decay from the base rate to zero over the run",
        Onecycle = "onecycle":
            "Linear warm-up from base/25 to the base rate over the first 30% of the steps, \
            then cosine decay to base/10,000 (PyTorch's OneCycleLR defaults, with a linear \
            warm-up)",
        Plateau = "plateau":
            "The base rate, times --plateau-factor after --plateau-patience epochs without a \
            lower validation loss (ReduceLROnPlateau; needs a validation split)",
    }
}

const ONECYCLE_WARMUP_FRACTION: f64 = 0.3;
const ONECYCLE_START_DIVISOR: f64 = 25.0;
const ONECYCLE_END_DIVISOR: f64 = 1e4;

impl Schedule {
    /// The learning rate for step `step` (0-based) of a run of `total_steps` steps.
    pub fn learning_rate(self, base: f64, step: usize, total_steps: usize) -> f64 {
        self.learning_rate_ending_at(base, None, step, total_steps)
    }

    /// As [`Schedule::learning_rate`], with the cosine and one-cycle schedules ending at `end`
    /// when it is given (`--min-lr`) rather than at their own end.
    pub fn learning_rate_ending_at(
        self,
        base: f64,
        end: Option<f64>,
        step: usize,
        total_steps: usize,
    ) -> f64 {
        let total = total_steps.max(1) as f64;
        let progress = (step as f64 / total).clamp(0.0, 1.0);
        match self {
            Self::Constant | Self::Plateau => base,
            Self::Cosine => match end {
                None => base * 0.5 * (1.0 + (PI * progress).cos()),
                Some(end) => end + (base - end) * 0.5 * (1.0 + (PI * progress).cos()),
            },
            Self::Onecycle => {
                let start = base / ONECYCLE_START_DIVISOR;
                let end = end.unwrap_or(base / ONECYCLE_END_DIVISOR);
                if progress < ONECYCLE_WARMUP_FRACTION {
                    start + (base - start) * progress / ONECYCLE_WARMUP_FRACTION
                } else {
                    let t =
                        (progress - ONECYCLE_WARMUP_FRACTION) / (1.0 - ONECYCLE_WARMUP_FRACTION);
                    end + (base - end) * 0.5 * (1.0 + (PI * t).cos())
                }
            }
        }
    }
}

/// ReduceLROnPlateau as PyTorch defines it (mode min, relative threshold 1e-4, no cooldown):
/// after each epoch the validation loss either improves on the best by more than the threshold,
/// or counts as a bad epoch; more than `patience` bad epochs in a row multiply the rate by
/// `factor`. Its state is found again from the run's validation losses when a run resumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    pub factor: f64,
    pub patience: usize,
    /// What the base rate is multiplied by now.
    pub scale: f64,
    best: f64,
    bad_epochs: usize,
}

const PLATEAU_THRESHOLD: f64 = 1e-4;

impl Plateau {
    pub fn new(factor: f64, patience: usize) -> Self {
        Self {
            factor,
            patience,
            scale: 1.0,
            best: f64::INFINITY,
            bad_epochs: 0,
        }
    }

    /// Takes an epoch's validation loss; true when the rate was lowered.
    pub fn observe(&mut self, loss: f64) -> bool {
        if loss < self.best * (1.0 - PLATEAU_THRESHOLD) {
            self.best = loss;
            self.bad_epochs = 0;
            return false;
        }
        self.bad_epochs += 1;
        if self.bad_epochs > self.patience {
            self.scale *= self.factor;
            self.bad_epochs = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn plateau_lowers_the_rate_after_patience_bad_epochs() {
        let mut plateau = Plateau::new(0.1, 1);
        let lowered: Vec<bool> = [1.0, 0.9, 0.9, 0.95, 0.8, 0.85, 0.85]
            .iter()
            .map(|loss| plateau.observe(*loss))
            .collect();
        assert_eq!(lowered, [false, false, false, true, false, false, true]);
        assert!(close(plateau.scale, 0.01));
    }

    #[test]
    fn constant_stays_put() {
        assert!(close(Schedule::Constant.learning_rate(0.1, 77, 100), 0.1));
    }

    #[test]
    fn cosine_goes_from_base_through_half_to_zero() {
        let s = Schedule::Cosine;
        assert!(close(s.learning_rate(1.0, 0, 100), 1.0));
        assert!(close(s.learning_rate(1.0, 50, 100), 0.5));
        assert!(s.learning_rate(1.0, 99, 100) < 0.001);
        assert!(close(s.learning_rate(1.0, 100, 100), 0.0));
        assert!(close(
            s.learning_rate_ending_at(1.0, Some(0.1), 0, 100),
            1.0
        ));
        assert!(close(
            s.learning_rate_ending_at(1.0, Some(0.1), 50, 100),
            0.55
        ));
        assert!(close(
            s.learning_rate_ending_at(1.0, Some(0.1), 100, 100),
            0.1
        ));
    }

    #[test]
    fn onecycle_warms_up_then_decays() {
        let s = Schedule::Onecycle;
        assert!(close(s.learning_rate(1.0, 0, 100), 1.0 / 25.0));
        assert!(close(s.learning_rate(1.0, 30, 100), 1.0));
        assert!(s.learning_rate(1.0, 15, 100) < s.learning_rate(1.0, 29, 100));
        assert!(s.learning_rate(1.0, 60, 100) < 1.0);
        assert!(close(s.learning_rate(1.0, 100, 100), 1e-4));
    }
}
