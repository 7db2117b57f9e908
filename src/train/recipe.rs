//! Named starting points: `train`'s [`Recipe`]s, and what a fine-tune starts from when no flag
//! says otherwise ([`finetune_defaults`]).

use super::options::{Epochs, TrainOptions};
use crate::choice::declare_choice;
use crate::nn::Architecture;
use crate::optim::schedule::Schedule;

declare_choice! {
    /// Named starting points for `train`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Recipe {
        Tutorial = "tutorial":
            "The Keras tutorial: 10 epochs, batch 32, Adam at 1e-3, constant rate",
        Fast = "fast":
            "The least training time to 99% on MNIST with the same network: 1.3 epochs at \
            batch 128 (the batch size with the highest throughput on the CPU), a one-cycle \
            schedule peaking at 1e-2, label smoothing 0.1",
        Large = "large":
            "The most accurate single model that trains on a 2-core CPU in about 15 minutes \
            (see docs/results.md): the vgg-32 network, 15 epochs at batch 128 with random affine \
            augmentation, a one-cycle schedule peaking at 4e-3, label smoothing 0.1",
    }
}

impl Recipe {
    /// The architecture the recipe is made for (`--arch` overrides it).
    pub fn architecture(self) -> Architecture {
        match self {
            Self::Tutorial | Self::Fast => Architecture::Tutorial,
            Self::Large => Architecture::Vgg { width: 32 },
        }
    }

    pub fn options(self) -> TrainOptions {
        match self {
            Self::Tutorial => TrainOptions::default(),
            Self::Large => TrainOptions {
                epochs: Epochs(15.0),
                batch_size: 128,
                learning_rate: 4e-3,
                schedule: Schedule::Onecycle,
                augment: true,
                label_smoothing: 0.1,
                ..TrainOptions::default()
            },
            Self::Fast => TrainOptions {
                epochs: Epochs(1.3),
                batch_size: 128,
                learning_rate: 1e-2,
                schedule: Schedule::Onecycle,
                label_smoothing: 0.1,
                ..TrainOptions::default()
            },
        }
    }
}

/// What a fine-tune starts from when no flag says otherwise: 3 epochs at a tenth of the
/// tutorial's rate.
pub fn finetune_defaults() -> TrainOptions {
    TrainOptions {
        epochs: Epochs(3.0),
        learning_rate: 1e-4,
        ..TrainOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    #[test]
    fn every_recipe_is_valid_and_named() {
        for recipe in Recipe::ALL {
            assert!(recipe.options().validate().is_ok(), "{recipe}");
        }
        assert!(finetune_defaults().validate().is_ok());
        assert_eq!(Recipe::names(), "tutorial, fast, large");
    }
}
