//! The scores a run is judged by after each epoch: loss and accuracy on the validation split
//! (which may choose the model) and on the test split (which never does).

use super::evaluate::{evaluate, Evaluation};
use crate::data::Split;
use crate::model::Predictor;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The data a run is judged on after each epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalSets<'a> {
    /// Held out from the training data; chooses the model when present.
    pub validation: Option<&'a Split>,
    /// Reported, never used to choose.
    pub test: Option<&'a Split>,
}

/// Loss and accuracy on the evaluation sets.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_accuracy: Option<f64>,
}

impl Scores {
    pub fn evaluate<P: Predictor + ?Sized>(model: &P, sets: &EvalSets) -> Result<Self> {
        let score = |split: Option<&Split>| -> Result<Option<Evaluation>> {
            split.map(|s| evaluate(model, s)).transpose()
        };
        let validation = score(sets.validation)?;
        let test = score(sets.test)?;
        Ok(Self {
            validation_loss: validation.as_ref().map(|e| e.loss),
            validation_accuracy: validation.as_ref().map(|e| e.accuracy()),
            test_loss: test.as_ref().map(|e| e.loss),
            test_accuracy: test.as_ref().map(|e| e.accuracy()),
        })
    }

    /// "validation accuracy 99.10% (loss 0.0301), test accuracy 99.05% (loss 0.0312)"
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(acc), Some(loss)) = (self.validation_accuracy, self.validation_loss) {
            parts.push(format!(
                "validation accuracy {:.2}% (loss {loss:.4})",
                100.0 * acc
            ));
        }
        if let (Some(acc), Some(loss)) = (self.test_accuracy, self.test_loss) {
            parts.push(format!(
                "test accuracy {:.2}% (loss {loss:.4})",
                100.0 * acc
            ));
        }
        parts.join(", ")
    }
}
