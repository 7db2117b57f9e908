//! Evaluation and inference: what a model (one network, an ensemble, turned views) says about
//! pictures, and how good that is.

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
