//! Classification metrics: loss, accuracy, the confusion matrix, and per-class precision,
//! recall and F1 with their macro averages.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A square confusion matrix: `counts[true_label][predicted_label]`. It serialises as a bare
/// array of rows, as `eval --json` documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        Self {
            counts: vec![vec![0; classes]; classes],
        }
    }

    /// Builds the matrix from paired true labels and predictions.
    pub fn from_labels(truth: &[i64], predicted: &[i64], classes: usize) -> Result<Self> {
        ensure!(
            truth.len() == predicted.len(),
            "{} labels but {} predictions",
            truth.len(),
            predicted.len()
        );
        let mut matrix = Self::new(classes);
        for (&t, &p) in truth.iter().zip(predicted) {
            matrix.add(t, p)?;
        }
        Ok(matrix)
    }

    pub fn add(&mut self, truth: i64, predicted: i64) -> Result<()> {
        let classes = self.classes() as i64;
        ensure!(
            (0..classes).contains(&truth) && (0..classes).contains(&predicted),
            "label {truth} or prediction {predicted} is outside 0..{classes}"
        );
        self.counts[truth as usize][predicted as usize] += 1;
        Ok(())
    }

    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    pub fn rows(&self) -> &[Vec<u64>] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes()).map(|c| self.counts[c][c]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Precision, recall, F1 and support of each class. A class never predicted has precision 0,
    /// a class absent from the data has recall 0 (scikit-learn's `zero_division=0`).
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.classes())
            .map(|c| {
                let true_positives = self.counts[c][c];
                let support: u64 = self.counts[c].iter().sum();
                let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
                let precision = ratio(true_positives, predicted);
                let recall = ratio(true_positives, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: c,
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Unweighted means over the classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacroAverages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// What `eval` reports; its JSON form is the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub accuracy: f64,
    pub loss: f64,
    #[serde(rename = "macro")]
    pub macro_avg: MacroAverages,
    pub per_class: Vec<ClassMetrics>,
    pub confusion_matrix: ConfusionMatrix,
}

impl ClassificationReport {
    pub fn new(loss: f64, confusion: ConfusionMatrix) -> Self {
        let per_class = confusion.per_class();
        let n = per_class.len().max(1) as f64;
        let mean = |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / n;
        Self {
            accuracy: confusion.accuracy(),
            loss,
            macro_avg: MacroAverages {
                precision: mean(|c| c.precision),
                recall: mean(|c| c.recall),
                f1: mean(|c| c.f1),
            },
            per_class,
            confusion_matrix: confusion,
        }
    }
}

impl fmt::Display for ClassificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.confusion_matrix.total();
        writeln!(
            f,
            "accuracy {:.2}% ({} of {total})   loss {:.4}",
            100.0 * self.accuracy,
            self.confusion_matrix.correct(),
            self.loss
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:>7} {:>10} {:>8} {:>8} {:>8}",
            "class", "precision", "recall", "f1", "support"
        )?;
        for c in &self.per_class {
            writeln!(
                f,
                "{:>7} {:>10.4} {:>8.4} {:>8.4} {:>8}",
                c.class, c.precision, c.recall, c.f1, c.support
            )?;
        }
        writeln!(
            f,
            "{:>7} {:>10.4} {:>8.4} {:>8.4} {:>8}",
            "macro", self.macro_avg.precision, self.macro_avg.recall, self.macro_avg.f1, total
        )?;
        writeln!(f)?;
        writeln!(f, "confusion matrix (rows: true digit, columns: predicted)")?;
        write!(f, "{:>7}", "")?;
        for c in 0..self.confusion_matrix.classes() {
            write!(f, "{c:>6}")?;
        }
        writeln!(f)?;
        for (t, row) in self.confusion_matrix.rows().iter().enumerate() {
            write!(f, "{t:>7}")?;
            for count in row {
                write!(f, "{count:>6}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn per_class_metrics_match_a_hand_computed_example() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let m = ConfusionMatrix::from_labels(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3).unwrap();
        assert_eq!(m.rows(), &[vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!(close(m.accuracy(), 4.0 / 6.0));
        let c = m.per_class();
        assert!(close(c[0].precision, 1.0) && close(c[0].recall, 2.0 / 3.0));
        assert!(close(c[1].precision, 0.5) && close(c[1].recall, 0.5));
        assert!(close(c[2].precision, 0.5) && close(c[2].recall, 1.0));
        assert!(close(c[0].f1, 0.8));
        assert_eq!(c.iter().map(|c| c.support).collect::<Vec<_>>(), [3, 2, 1]);
        let report = ClassificationReport::new(0.5, m);
        assert!(close(report.macro_avg.precision, (1.0 + 0.5 + 0.5) / 3.0));
        assert!(close(
            report.macro_avg.recall,
            (2.0 / 3.0 + 0.5 + 1.0) / 3.0
        ));
    }

    #[test]
    fn classes_never_predicted_or_absent_score_zero_not_nan() {
        let m = ConfusionMatrix::from_labels(&[0, 0], &[0, 0], 2).unwrap();
        let c = m.per_class();
        assert_eq!((c[1].precision, c[1].recall, c[1].f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn labels_outside_the_classes_are_rejected() {
        assert!(ConfusionMatrix::from_labels(&[10], &[0], 10).is_err());
        assert!(ConfusionMatrix::from_labels(&[0], &[0, 1], 10).is_err());
    }

    #[test]
    fn json_has_the_documented_shape() {
        let m = ConfusionMatrix::from_labels(&[0, 1], &[0, 0], 2).unwrap();
        let json = serde_json::to_value(ClassificationReport::new(0.25, m)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys.len(), 5);
        for key in ["accuracy", "loss", "macro", "per_class", "confusion_matrix"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(
            json["confusion_matrix"],
            serde_json::json!([[1, 0], [1, 0]])
        );
        assert_eq!(json["per_class"][0]["support"], 1);
        assert!(json["macro"]["f1"].is_number());
    }
}
