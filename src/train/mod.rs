//! Training, in memory: the loop shared by `train` and `finetune` (Adam, AdamW or SGD on
//! cross-entropy, the data reshuffled each epoch from the seed, an optional learning-rate
//! schedule, augmentation, label smoothing, frozen layers and weight averaging, and an
//! evaluation after each epoch).
//! Nothing here touches the disk: each finished epoch goes to an [`EpochSink`], which the run
//! (see [`crate::run`]) implements by writing the run folder.
//!
//! - [`options`]: the hyper-parameters, each declared once (with [`settings`], which makes
//!   their fields, defaults, checks, overrides and flag table from that declaration);
//! - [`recipe`]: the named starting points, and a fine-tune's defaults;
//! - [`records`]: the epoch records, the run's history, the final figures;
//! - [`trainer`]: one epoch of steps;
//! - [`fit`]: the loop over epochs;
//! - [`sink`]: where the loop hands its epochs and step samples;
//! - [`selection`]: which epoch is delivered, which leads on validation, and patience;
//! - [`average`]: the weight average;
//! - [`state`]: the training state a resumed run starts from;
//! - [`lr_find`]: the learning-rate range test (`lr-find`).

pub mod average;
pub mod fit;
pub mod lr_find;
pub mod options;
pub mod recipe;
pub mod records;
pub mod selection;
pub mod settings;
pub mod sink;
pub mod state;
pub mod trainer;

pub use fit::Fit;
pub use options::{
    rules, Epochs, Freeze, TrainOptions, TrainOverrides, TrainSetting, KEYS, SETTINGS,
};
pub use recipe::{finetune_defaults, Recipe};
pub use records::{EpochRecord, FinalMetrics, FitOutcome, History, StepSample};
pub use settings::{Flag, FlagOn};
pub use sink::{Discard, EpochSink, Saves};
pub use state::{RunPosition, TrainingState};
pub use trainer::{train_step, Batch, Step, SAMPLE_EVERY};
