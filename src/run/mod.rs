//! One training run from start to end: [`execute`] takes a [`RunPlan`], trains through
//! [`crate::train`], keeps the run folder current after every epoch, and records how the run
//! ended.

pub mod plan;
pub mod sink;
pub mod training;

pub use plan::{Resumable, ResumeChanges, RunPlan, Start};
pub use training::{execute, AfterRun, CompletedRun, NothingAfter, RunFigures};
