//! A network with its variables ([`Classifier`]), and what any model that answers does
//! ([`Predictor`]).

pub mod classifier;
pub mod predictor;

pub use classifier::{Classifier, NamedTensor};
pub use predictor::Predictor;
