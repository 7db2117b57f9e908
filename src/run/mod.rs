//! One training run from start to end: [`execute`] takes a [`RunPlan`] (what the command line
//! asked for, or an interrupted run to continue), trains through [`crate::train`], keeps the
//! run folder (see [`crate::io::run_folder`]) up to date after every epoch, and records how the
//! run ended. The command line only builds the plan and prints the outcome.

pub mod plan;
pub mod sink;
pub mod training;

pub use plan::{Resumable, ResumeChanges, RunPlan, Start};
pub use training::{execute, AfterRun, CompletedRun, NothingAfter, RunFigures};
