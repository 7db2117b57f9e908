//! Fair dynamic batching. Handlers hand in whole requests (their fields already admitted, see
//! [`super::admission`]); one thread that owns the model draws each batch from every request
//! waiting, in turns (round robin, a fair share of the batch each), so that a request for one
//! digit is answered within a batch or two however long the lists around it are. A request whose
//! client has gone is dropped before any more of its fields are computed.
//!
//! A batch that is not full waits (at most `max_wait`) only while other requests are arriving
//! (their bodies received, their fields being decoded): never for a slow upload, and a lone
//! client gets its answer without the wait.
//!
//! The model lives on its own OS thread because libtorch calls block (and tch tensors are not
//! `Sync`).

use super::admission::Ticket;
use super::metrics::{Abandoned, Metrics, Settled};
use crate::eval::{infer, Ensemble};
use crate::shape::{IMAGE_PIXELS, NUM_CLASSES};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::error;

/// The ten probabilities of each field of a request, in order, or why there are none.
pub type Answer = Result<Vec<Vec<f32>>, String>;

/// One admitted request.
pub struct Job {
    /// The fields, 784 values each, one after the other.
    pixels: Vec<f32>,
    ticket: Ticket,
    reply: oneshot::Sender<Answer>,
}

impl Job {
    /// A request of `fields` (784 values each) holding `ticket` for them.
    pub fn new(fields: Vec<Vec<f32>>, ticket: Ticket) -> (Self, oneshot::Receiver<Answer>) {
        debug_assert!(fields.iter().all(|f| f.len() == IMAGE_PIXELS));
        debug_assert_eq!(fields.len(), ticket.held());
        let (reply, answer) = oneshot::channel();
        let job = Self {
            pixels: fields.concat(),
            ticket,
            reply,
        };
        (job, answer)
    }

    fn fields(&self) -> usize {
        self.pixels.len() / IMAGE_PIXELS
    }
}

/// The model thread has stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped;

/// The handlers' side of the batcher.
#[derive(Clone)]
pub struct BatcherHandle {
    queue: Sender<Job>,
}

impl BatcherHandle {
    /// Hands a request to the model thread. (Admission has already bounded the fields in flight,
    /// so the channel needs no bound of its own.)
    pub fn submit(&self, job: Job) -> Result<(), Stopped> {
        self.queue.send(job).map_err(|_| Stopped)
    }
}

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
}

/// A request being answered: how many of its fields went into batches, and their answers.
struct Active {
    job: Job,
    taken: usize,
    probabilities: Vec<f32>,
}

impl Active {
    fn remaining(&self) -> usize {
        self.job.fields() - self.taken
    }
}

/// Fields `start..start + len` of the request in slot `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    slot: usize,
    start: usize,
    len: usize,
}

/// The requests in flight on the model thread, and the turns they take.
struct Rotation {
    active: VecDeque<Active>,
    max_batch: usize,
}

impl Rotation {
    fn new(max_batch: usize) -> Self {
        Self {
            active: VecDeque::new(),
            max_batch,
        }
    }

    fn add(&mut self, job: Job) {
        let fields = job.fields();
        self.active.push_back(Active {
            job,
            taken: 0,
            probabilities: Vec::with_capacity(fields * NUM_CLASSES as usize),
        });
    }

    fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    fn pending(&self) -> usize {
        self.active.iter().map(Active::remaining).sum()
    }

    /// Drops the requests whose clients have gone (their tickets give their fields back):
    /// `dropped` counts the fields never computed, `unclaimed` those already computed.
    fn drop_abandoned(&mut self) -> Abandoned {
        let mut abandoned = Abandoned::default();
        self.active.retain(|a| {
            let gone = a.job.reply.is_closed();
            if gone {
                abandoned.dropped += a.remaining();
                abandoned.unclaimed += a.taken;
            }
            !gone
        });
        abandoned
    }

    /// The next batch: each request in turn gives up to an equal share of `max_batch`, passes
    /// repeating while there is room and fields left.
    fn next_batch(&mut self) -> Vec<Part> {
        let mut parts: Vec<Part> = Vec::new();
        let mut room = self.max_batch;
        while room > 0 {
            let waiting = self.active.iter().filter(|a| a.remaining() > 0).count();
            if waiting == 0 {
                break;
            }
            let share = (room / waiting).max(1);
            for (slot, active) in self.active.iter_mut().enumerate() {
                let len = share.min(active.remaining()).min(room);
                if len == 0 {
                    continue;
                }
                parts.push(Part {
                    slot,
                    start: active.taken,
                    len,
                });
                active.taken += len;
                room -= len;
            }
        }
        parts
    }

    fn pixels(&self, parts: &[Part]) -> Vec<f32> {
        let mut pixels =
            Vec::with_capacity(parts.iter().map(|p| p.len).sum::<usize>() * IMAGE_PIXELS);
        for part in parts {
            let job = &self.active[part.slot].job;
            pixels.extend_from_slice(
                &job.pixels[part.start * IMAGE_PIXELS..(part.start + part.len) * IMAGE_PIXELS],
            );
        }
        pixels
    }

    /// Hands each part its probabilities (or the batch's error), answers the requests now
    /// complete, and gives the next batch's first turns to the requests this one did not reach.
    /// Each complete request is counted in `metrics` before its answer is sent, so that a client
    /// that reads /metrics after its answer finds it counted.
    fn settle(
        &mut self,
        parts: &[Part],
        outcome: Result<Vec<f32>, String>,
        metrics: &Metrics,
    ) -> Settled {
        let mut settled = Settled::default();
        let classes = NUM_CLASSES as usize;
        let mut served = vec![false; self.active.len()];
        for part in parts {
            served[part.slot] = true;
        }
        if let Ok(values) = &outcome {
            let mut offset = 0;
            for part in parts {
                let active = &mut self.active[part.slot];
                active.job.ticket.release(part.len);
                let end = offset + part.len * classes;
                active.probabilities.extend_from_slice(&values[offset..end]);
                offset = end;
            }
        }
        // Round robin: the requests this batch served and still unfinished go behind the ones
        // it did not reach, so those come first next time.
        let (mut kept, mut behind) = (VecDeque::new(), VecDeque::new());
        for (slot, active) in self.active.drain(..).enumerate() {
            let fields = active.job.fields();
            if let (true, Err(message)) = (served[slot], &outcome) {
                let _ = active.job.reply.send(Err(message.clone()));
            } else if active.taken == fields && active.probabilities.len() == fields * classes {
                let answer = active
                    .probabilities
                    .chunks(classes)
                    .map(<[f32]>::to_vec)
                    .collect();
                // A client that leaves between this check and the send is counted as answered.
                let one = if active.job.reply.is_closed() {
                    Settled {
                        answered: 0,
                        unclaimed: fields,
                    }
                } else {
                    Settled {
                        answered: fields,
                        unclaimed: 0,
                    }
                };
                metrics.observe_settled(one);
                settled.answered += one.answered;
                settled.unclaimed += one.unclaimed;
                let _ = active.job.reply.send(Ok(answer));
            } else if served[slot] {
                behind.push_back(active);
            } else {
                kept.push_back(active);
            }
        }
        kept.append(&mut behind);
        self.active = kept;
        settled
    }
}

/// The running model thread and the handle to queue requests for it.
pub struct ModelThread {
    pub handle: BatcherHandle,
    pub thread: JoinHandle<()>,
}

/// Starts the model thread. It stops when every handle is dropped and nothing is left to
/// answer, so dropping the handles after the server stops drains what is in flight.
///
/// `arriving` counts the requests whose bodies have arrived and whose fields are being prepared
/// (the handlers keep it): a batch that is not full waits only while it is above zero.
pub fn start(
    model: Ensemble,
    policy: BatchPolicy,
    metrics: Arc<Metrics>,
    arriving: Arc<AtomicUsize>,
) -> ModelThread {
    let (queue, jobs) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("model".to_owned())
        .spawn(move || run(model, jobs, policy, &metrics, &arriving))
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
    arriving: &AtomicUsize,
) {
    let mut rotation = Rotation::new(policy.max_batch);
    while gather(&mut rotation, &jobs, policy, arriving) {
        metrics.observe_abandoned(rotation.drop_abandoned());
        let parts = rotation.next_batch();
        if parts.is_empty() {
            continue;
        }
        let fields: usize = parts.iter().map(|p| p.len).sum();
        let pixels = rotation.pixels(&parts);
        let started = Instant::now();
        let outcome = forward(&model, &pixels, fields);
        metrics.observe_batch(fields);
        metrics.observe_inference(started.elapsed());
        rotation.settle(&parts, outcome, metrics);
    }
}

/// Takes in the requests handed over: blocks while there is nothing to do, then waits (up to
/// `max_wait`) for more while the next batch would not be full and others are arriving. False
/// when the handles are gone and nothing is left.
fn gather(
    rotation: &mut Rotation,
    jobs: &Receiver<Job>,
    policy: BatchPolicy,
    arriving: &AtomicUsize,
) -> bool {
    if rotation.is_empty() {
        match jobs.recv() {
            Ok(job) => rotation.add(job),
            Err(_) => return false,
        }
    }
    while let Ok(job) = jobs.try_recv() {
        rotation.add(job);
    }
    let deadline = Instant::now() + policy.max_wait;
    while rotation.pending() < policy.max_batch && arriving.load(Ordering::Acquire) > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match jobs.recv_timeout(deadline - now) {
            Ok(job) => rotation.add(job),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    true
}

/// One forward pass over `fields` fields. A libtorch error (it surfaces as a panic in tch) fails
/// this batch's requests, not the server.
fn forward(model: &Ensemble, pixels: &[f32], fields: usize) -> Result<Vec<f32>, String> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Vec::<f32>::try_from(infer::probabilities(model, pixels).flatten(0, -1))
    }));
    match outcome {
        Ok(Ok(values)) if values.len() == fields * NUM_CLASSES as usize => Ok(values),
        Ok(Ok(values)) => Err(format!(
            "the model gave {} values for {fields} fields",
            values.len()
        )),
        Ok(Err(e)) => Err(format!("cannot read the model's output: {e}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown error");
            let first_line = message.lines().next().unwrap_or(message);
            error!("inference failed: {first_line}");
            Err(format!("inference failed: {first_line}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Classifier;
    use crate::nn::Architecture;
    use crate::serve::admission::{Admission, AdmissionPolicy};
    use crate::serve::metrics::BatchCount;

    fn admission() -> Admission {
        Admission::new(AdmissionPolicy {
            capacity: 4096,
            reserve: 1024,
            small_request: 8,
        })
    }

    fn field(value: f32) -> Vec<f32> {
        vec![value; IMAGE_PIXELS]
    }

    fn job(admission: &Admission, fields: usize) -> (Job, oneshot::Receiver<Answer>) {
        let ticket = admission.try_admit(fields).unwrap();
        Job::new((0..fields).map(|i| field(i as f32 / 1e3)).collect(), ticket)
    }

    /// Three lists of 1,000 and a single field: the single one is in the first batch, and each
    /// list gets a fair share of every batch.
    #[test]
    fn every_request_gets_a_turn_in_each_batch() {
        let admission = admission();
        let mut rotation = Rotation::new(64);
        let mut answers = Vec::new();
        for fields in [1000, 1000, 1000, 1] {
            let (job, answer) = job(&admission, fields);
            rotation.add(job);
            answers.push(answer);
        }
        let parts = rotation.next_batch();
        assert_eq!(parts.iter().map(|p| p.len).sum::<usize>(), 64);
        let lens: Vec<(usize, usize)> = parts.iter().map(|p| (p.slot, p.len)).collect();
        assert!(lens.contains(&(3, 1)), "the single field waits: {lens:?}");
        for slot in 0..3 {
            let share: usize = parts.iter().filter(|p| p.slot == slot).map(|p| p.len).sum();
            assert!(
                (20..=22).contains(&share),
                "slot {slot} got {share}: {lens:?}"
            );
        }
        let probabilities = vec![0.1; 64 * 10];
        let settled = rotation.settle(&parts, Ok(probabilities), &Metrics::new());
        assert_eq!(
            settled,
            Settled {
                answered: 1,
                unclaimed: 0
            }
        );
        let single = answers.pop().unwrap().try_recv().unwrap().unwrap();
        assert_eq!(single, vec![vec![0.1; 10]]);
        assert_eq!(admission.in_flight(), 3000 - 63);
    }

    /// With room for fewer fields than requests, the ones left out go first next time.
    #[test]
    fn requests_left_out_of_a_batch_go_first_in_the_next() {
        let admission = admission();
        let mut rotation = Rotation::new(2);
        let mut answers = Vec::new();
        for fields in [3, 1, 1, 1] {
            let (job, answer) = job(&admission, fields);
            rotation.add(job);
            answers.push(answer);
        }
        let first = rotation.next_batch();
        assert_eq!(first.iter().map(|p| p.slot).collect::<Vec<_>>(), [0, 1]);
        rotation.settle(&first, Ok(vec![0.1; 20]), &Metrics::new());
        // The single field of slot 1 is answered; slots 2 and 3 now lead, the list follows.
        let second = rotation.next_batch();
        let fields: Vec<usize> = second
            .iter()
            .map(|p| rotation.active[p.slot].job.fields())
            .collect();
        assert_eq!(
            fields,
            [1, 1],
            "the two waiting singles come before the list"
        );
        assert!(answers[1].try_recv().is_ok());
    }

    /// A request whose client has gone is dropped before the next batch, and its fields are
    /// given back without being computed.
    #[test]
    fn an_abandoned_request_is_dropped_before_it_is_computed() {
        let admission = admission();
        let mut rotation = Rotation::new(64);
        let (kept, _kept_answer) = job(&admission, 100);
        let (abandoned, abandoned_answer) = job(&admission, 500);
        rotation.add(kept);
        rotation.add(abandoned);
        drop(abandoned_answer);
        assert_eq!(
            rotation.drop_abandoned(),
            Abandoned {
                dropped: 500,
                unclaimed: 0
            }
        );
        assert_eq!(admission.in_flight(), 100);
        let parts = rotation.next_batch();
        assert!(parts.iter().all(|p| p.slot == 0));
        assert_eq!(rotation.pending(), 36);
    }

    #[test]
    fn a_failed_batch_fails_its_requests_and_keeps_the_others() {
        let admission = admission();
        let mut rotation = Rotation::new(2);
        let (a, mut a_answer) = job(&admission, 1);
        let (b, mut b_answer) = job(&admission, 1);
        let (c, mut c_answer) = job(&admission, 1);
        for j in [a, b, c] {
            rotation.add(j);
        }
        let parts = rotation.next_batch();
        assert_eq!(parts.len(), 2);
        rotation.settle(
            &parts,
            Err("inference failed: boom".to_owned()),
            &Metrics::new(),
        );
        assert_eq!(
            a_answer.try_recv().unwrap(),
            Err("inference failed: boom".to_owned())
        );
        assert!(b_answer.try_recv().unwrap().is_err());
        assert!(c_answer.try_recv().is_err(), "c was not in the batch");
        assert_eq!(rotation.pending(), 1);
        drop(rotation);
        assert_eq!(
            admission.in_flight(),
            0,
            "dropped requests give their fields back"
        );
    }

    /// The model thread end to end: fields come back in order, each with the answer a batch of
    /// one gives, and every computed field is counted once.
    #[test]
    fn requests_are_answered_in_order_and_counted_exactly() {
        tch::manual_seed(1);
        let model = Ensemble::new(
            vec![Classifier::new(Architecture::Tutorial, tch::Device::Cpu)],
            false,
        );
        let metrics = Arc::new(Metrics::new());
        let policy = BatchPolicy {
            max_batch: 8,
            max_wait: Duration::from_millis(50),
        };
        let ModelThread { handle, thread } = start(
            model,
            policy,
            metrics.clone(),
            Arc::new(AtomicUsize::new(0)),
        );
        let admission = admission();
        let (list, list_answer) = job(&admission, 20);
        let (one, one_answer) = job(&admission, 1);
        handle.submit(list).unwrap();
        handle.submit(one).unwrap();
        let list_answer = list_answer.blocking_recv().unwrap().unwrap();
        let one_answer = one_answer.blocking_recv().unwrap().unwrap();
        assert_eq!(list_answer.len(), 20);
        for (a, b) in list_answer[0].iter().zip(&one_answer[0]) {
            assert!(
                (a - b).abs() < 1e-5,
                "field 0 of the list is the single field"
            );
        }
        assert_ne!(list_answer[0], list_answer[19]);
        drop(handle);
        thread.join().unwrap();
        let BatchCount { batches, fields } = metrics.batches();
        assert_eq!(fields, 21);
        assert!(batches >= 3);
        assert_eq!(metrics.answered(), 21);
        assert_eq!(admission.in_flight(), 0);
    }
}
