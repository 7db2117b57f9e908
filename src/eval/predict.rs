//! Inference on pictures: preprocess each (the same function as image folders), run them
//! through the model in batches, and report the digit, its probability and the runners-up.

use super::infer;
use crate::data::images;
use crate::model::Predictor;
use serde::Serialize;
use std::path::PathBuf;

/// Pictures per forward pass.
const PREDICT_BATCH: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub digit: i64,
    pub probability: f64,
}

/// The answer for one picture: a prediction, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PictureResult {
    Predicted {
        path: PathBuf,
        digit: i64,
        probability: f64,
        top_k: Vec<Candidate>,
    },
    Failed {
        path: PathBuf,
        error: String,
    },
}

impl PictureResult {
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// A picture after preprocessing: the 28×28 field the network sees.
pub struct Prepared {
    pub path: PathBuf,
    pub field: Result<Vec<f32>, String>,
}

/// Preprocesses every picture, keeping per-file errors.
pub fn prepare(paths: &[PathBuf]) -> Vec<Prepared> {
    paths
        .iter()
        .map(|path| Prepared {
            path: path.clone(),
            field: images::load_picture(path).map_err(|e| format!("{e:#}")),
        })
        .collect()
}

/// Predicts every prepared picture, in batches; failed pictures keep their error.
pub fn predict<P: Predictor + ?Sized>(
    model: &P,
    prepared: &[Prepared],
    top_k: usize,
) -> Vec<PictureResult> {
    // The positions of the pictures that were read, and their fields.
    let ready: Vec<(usize, &Vec<f32>)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.field.as_ref().ok().map(|f| (i, f)))
        .collect();
    // The candidates of each picture, best first.
    let mut answers: Vec<Option<Vec<Candidate>>> = vec![None; prepared.len()];
    for chunk in ready.chunks(PREDICT_BATCH) {
        let pixels: Vec<f32> = chunk.iter().flat_map(|(_, f)| f.iter().copied()).collect();
        let probabilities = infer::probabilities(model, &pixels);
        let (values, indices) = probabilities.topk(top_k as i64, -1, true, true);
        let values = Vec::<f32>::try_from(values.flatten(0, -1)).expect("float probabilities");
        let indices = Vec::<i64>::try_from(indices.flatten(0, -1)).expect("int64 indices");
        for (row, (index, _)) in chunk.iter().enumerate() {
            let top: Vec<Candidate> = (0..top_k)
                .map(|k| Candidate {
                    digit: indices[row * top_k + k],
                    probability: f64::from(values[row * top_k + k]),
                })
                .collect();
            answers[*index] = Some(top);
        }
    }
    prepared
        .iter()
        .zip(answers)
        .map(|(p, answer)| match (answer, &p.field) {
            (Some(top_k), _) => PictureResult::Predicted {
                path: p.path.clone(),
                digit: top_k[0].digit,
                probability: top_k[0].probability,
                top_k,
            },
            (None, Err(error)) => PictureResult::Failed {
                path: p.path.clone(),
                error: error.clone(),
            },
            (None, Ok(_)) => unreachable!("every prepared picture was predicted"),
        })
        .collect()
}
