//! Training in memory: the settings (each declared once), the recipes, and the loop shared by
//! `train` and `finetune`, which hands each finished epoch to an [`EpochSink`] rather than
//! touching the disk.

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
pub use trainer::{train_step, Batch, ScheduleClock, Step, SAMPLE_EVERY};
