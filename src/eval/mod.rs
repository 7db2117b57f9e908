//! Evaluation and inference: what a model (one network or an ensemble) says about pictures, and
//! how good that is.
//!
//! - [`metrics`]: the confusion matrix, per-class precision/recall/F1, the classification report;
//! - [`evaluate`]: a model over a split: loss, predictions, confidences;
//! - [`scores`]: the validation and test scores a run records after each epoch;
//! - [`ensemble`] and [`tta`]: several models, and turned views, answering as one;
//! - [`infer`] and [`predict`]: pixels to probabilities, pictures to digits.

pub mod ensemble;
pub mod evaluate;
pub mod infer;
pub mod metrics;
pub mod predict;
pub mod scores;
pub mod tta;

pub use ensemble::Ensemble;
pub use evaluate::{evaluate, Evaluation};
pub use metrics::{ClassificationReport, ConfusionMatrix};
pub use scores::{EvalSets, Scores};
