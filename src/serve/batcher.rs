//! Dynamic batching: request handlers hand in single 28×28 fields; one thread that owns the
//! model takes whatever has queued (up to `max_batch`), waits at most `max_wait` for more when
//! the batch is not full and more requests are in flight, runs one forward pass, and answers
//! each field. (With nothing else in flight, waiting would only add latency: a lone client gets
//! its answer without the wait.)
//!
//! The model lives on its own OS thread because libtorch calls block (and tch tensors are not
//! `Sync`); the queue is bounded, so an overloaded server answers 503 at once instead of
//! growing a backlog.

use super::metrics::Metrics;
use crate::eval::{infer, Ensemble};
use crate::shape::{IMAGE_PIXELS, NUM_CLASSES};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::error;

/// The ten probabilities for one field, or why there are none.
pub type Answer = Result<Vec<f32>, String>;

struct Job {
    field: Vec<f32>,
    reply: oneshot::Sender<Answer>,
}

/// Why a field could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: the server is at capacity.
    Busy,
    /// The model thread has stopped.
    Stopped,
}

/// The handlers' side of the batcher.
#[derive(Clone)]
pub struct BatcherHandle {
    queue: SyncSender<Job>,
}

impl BatcherHandle {
    /// Queues one field; the answer arrives on the returned receiver.
    pub fn submit(&self, field: Vec<f32>) -> Result<oneshot::Receiver<Answer>, Refused> {
        debug_assert_eq!(field.len(), IMAGE_PIXELS);
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { field, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Fields that may wait in the queue.
    pub queue_capacity: usize,
}

/// The running model thread and the handle to queue fields for it.
pub struct ModelThread {
    pub handle: BatcherHandle,
    pub thread: JoinHandle<()>,
}

/// Starts the model thread. It stops when every handle is dropped and the queue is empty, so
/// dropping the handles after the server stops drains what is in flight.
///
/// `in_flight` counts the requests being handled (the handlers keep it): a batch waits for more
/// fields only while it holds fewer than that.
pub fn start(
    model: Ensemble,
    policy: BatchPolicy,
    metrics: Arc<Metrics>,
    in_flight: Arc<AtomicUsize>,
) -> ModelThread {
    let (queue, jobs) = mpsc::sync_channel(policy.queue_capacity);
    let thread = std::thread::Builder::new()
        .name("model".to_owned())
        .spawn(move || run(model, jobs, policy, &metrics, &in_flight))
        .expect("cannot start the model thread");
    ModelThread {
        handle: BatcherHandle { queue },
        thread,
    }
}

fn run(
    model: Ensemble,
    jobs: Receiver<Job>,
    policy: BatchPolicy,
    metrics: &Metrics,
    in_flight: &AtomicUsize,
) {
    while let Some(batch) = next_batch(&jobs, policy, in_flight) {
        metrics.observe_batch(batch.len());
        let started = Instant::now();
        let answers = answer(&model, &batch);
        metrics.observe_inference(started.elapsed());
        for (job, answer) in batch.into_iter().zip(answers) {
            // The client may have gone; its answer is then dropped.
            let _ = job.reply.send(answer);
        }
    }
}

/// Blocks for the first job, then gathers more until the batch is full, or `max_wait` has
/// passed since the first arrived, or no other request is in flight. None when the queue is
/// closed and empty.
fn next_batch(
    jobs: &Receiver<Job>,
    policy: BatchPolicy,
    in_flight: &AtomicUsize,
) -> Option<Vec<Job>> {
    let first = jobs.recv().ok()?;
    let deadline = Instant::now() + policy.max_wait;
    let mut batch = vec![first];
    while batch.len() < policy.max_batch {
        // Whatever is queued already joins without waiting.
        match jobs.try_recv() {
            Ok(job) => {
                batch.push(job);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if batch.len() >= in_flight.load(Ordering::Acquire) {
            break; // every request in flight is in this batch: nothing to wait for
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match jobs.recv_timeout(deadline - now) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// One forward pass over the batch. A libtorch error (it surfaces as a panic in tch) fails
/// this batch's requests, not the server.
fn answer(model: &Ensemble, batch: &[Job]) -> Vec<Answer> {
    let n = batch.len();
    let pixels: Vec<f32> = batch
        .iter()
        .flat_map(|job| job.field.iter().copied())
        .collect();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Vec::<f32>::try_from(infer::probabilities(model, &pixels).flatten(0, -1))
    }));
    match outcome {
        Ok(Ok(values)) => values
            .chunks(NUM_CLASSES as usize)
            .map(|row| Ok(row.to_vec()))
            .collect(),
        Ok(Err(e)) => failed(n, &format!("cannot read the model's output: {e}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown error");
            let first_line = message.lines().next().unwrap_or(message);
            error!("inference failed: {first_line}");
            failed(n, &format!("inference failed: {first_line}"))
        }
    }
}

fn failed(n: usize, message: &str) -> Vec<Answer> {
    (0..n).map(|_| Err(message.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Classifier;
    use crate::nn::Architecture;
    use crate::serve::metrics::BatchCount;

    fn batcher(max_batch: usize, max_wait_ms: u64) -> (ModelThread, Arc<Metrics>) {
        tch::manual_seed(1);
        let model = Ensemble::new(
            vec![Classifier::new(Architecture::Tutorial, tch::Device::Cpu)],
            false,
        );
        let metrics = Arc::new(Metrics::new());
        let policy = BatchPolicy {
            max_batch,
            max_wait: Duration::from_millis(max_wait_ms),
            queue_capacity: 64,
        };
        // Five requests in flight: the batch waits for the fields still to come.
        let in_flight = Arc::new(AtomicUsize::new(5));
        (start(model, policy, metrics.clone(), in_flight), metrics)
    }

    fn field(value: f32) -> Vec<f32> {
        vec![value; IMAGE_PIXELS]
    }

    /// Fields queued together come back in one batch, each with its own answer (the same one a
    /// batch of one gives), and the thread ends once the handles are gone.
    #[test]
    fn queued_fields_are_answered_in_batches_and_each_gets_its_own_answer() {
        let (ModelThread { handle, thread }, metrics) = batcher(8, 200);
        let receivers: Vec<_> = (0..5)
            .map(|i| handle.submit(field(i as f32 / 5.0)).unwrap())
            .collect();
        let answers: Vec<Vec<f32>> = receivers
            .into_iter()
            .map(|r| r.blocking_recv().unwrap().unwrap())
            .collect();
        for answer in &answers {
            assert_eq!(answer.len(), 10);
            assert!((answer.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
        assert_ne!(answers[0], answers[4]);
        let alone = handle
            .submit(field(4.0 / 5.0))
            .unwrap()
            .blocking_recv()
            .unwrap()
            .unwrap();
        for (a, b) in alone.iter().zip(&answers[4]) {
            assert!((a - b).abs() < 1e-5);
        }
        let BatchCount { batches, fields } = metrics.batches();
        assert_eq!(fields, 6);
        assert!(batches < 6, "no batching: {batches} batches");
        drop(handle);
        thread.join().unwrap();
    }

    #[test]
    fn a_full_queue_is_refused_not_grown() {
        let (queue, _jobs) = mpsc::sync_channel(2);
        let handle = BatcherHandle { queue };
        assert!(handle.submit(field(0.0)).is_ok());
        assert!(handle.submit(field(0.0)).is_ok());
        assert_eq!(handle.submit(field(0.0)).unwrap_err(), Refused::Busy);
        drop(_jobs);
        assert_eq!(handle.submit(field(0.0)).unwrap_err(), Refused::Stopped);
    }
}
