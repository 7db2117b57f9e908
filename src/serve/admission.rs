//! Admission: the server bounds the work in flight by fields (28×28 inputs still to compute),
//! not by requests, and admits a request only when all of its fields fit, so that nothing of a
//! refused request is ever computed.
//!
//! The last part of the capacity (`reserve`, one maximal request's worth by default) is kept for
//! small requests (at most one batch of fields): clients that send maximal lists in a loop can
//! fill the rest, but a request for one digit still finds room, and the fair batching of
//! [`super::batcher`] serves it within a few batches.

use std::sync::{Arc, Mutex};

/// How many fields may be in flight, and how they are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Fields admitted and not yet computed (or dropped), server-wide.
    pub capacity: usize,
    /// Part of `capacity` that only small requests may use.
    pub reserve: usize,
    /// The most fields a request may have and still count as small (one batch).
    pub small_request: usize,
}

impl AdmissionPolicy {
    /// Whether a request of `fields` fits while `used` fields are in flight.
    fn fits(&self, used: usize, fields: usize) -> bool {
        let limit = if fields <= self.small_request {
            self.capacity
        } else {
            self.capacity.saturating_sub(self.reserve)
        };
        used.saturating_add(fields) <= limit
    }
}

/// The fields in flight, shared by the handlers (which admit) and the model thread (which
/// releases, through [`Ticket`]).
#[derive(Debug, Clone)]
pub struct Admission {
    policy: AdmissionPolicy,
    used: Arc<Mutex<usize>>,
}

/// A request's admitted fields; given back as they are computed or dropped, and all at once
/// when the ticket is dropped.
#[derive(Debug)]
pub struct Ticket {
    used: Arc<Mutex<usize>>,
    held: usize,
}

impl Admission {
    pub fn new(policy: AdmissionPolicy) -> Self {
        Self {
            policy,
            used: Arc::new(Mutex::new(0)),
        }
    }

    pub fn policy(&self) -> AdmissionPolicy {
        self.policy
    }

    /// Admits `fields` fields, all or none.
    pub fn try_admit(&self, fields: usize) -> Option<Ticket> {
        let mut used = lock(&self.used);
        if !self.policy.fits(*used, fields) {
            return None;
        }
        *used += fields;
        Some(Ticket {
            used: self.used.clone(),
            held: fields,
        })
    }

    /// Fields in flight now.
    pub fn in_flight(&self) -> usize {
        *lock(&self.used)
    }
}

impl Ticket {
    /// Gives back `fields` of this ticket's fields (computed, or dropped).
    pub fn release(&mut self, fields: usize) {
        let fields = fields.min(self.held);
        self.held -= fields;
        *lock(&self.used) -= fields;
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let held = self.held;
        self.release(held);
    }
}

fn lock(used: &Mutex<usize>) -> std::sync::MutexGuard<'_, usize> {
    // The count stays consistent under a panic elsewhere: every change is one statement.
    used.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission() -> Admission {
        Admission::new(AdmissionPolicy {
            capacity: 4096,
            reserve: 1024,
            small_request: 64,
        })
    }

    #[test]
    fn maximal_requests_fill_only_the_unreserved_part_and_one_digit_still_fits() {
        let admission = admission();
        let flood: Vec<Ticket> = (0..3).map(|_| admission.try_admit(1024).unwrap()).collect();
        assert!(
            admission.try_admit(1024).is_none(),
            "a fourth maximal list must not take the reserve"
        );
        assert!(admission.try_admit(65).is_none());
        let singles: Vec<Ticket> = (0..1024).map(|_| admission.try_admit(1).unwrap()).collect();
        assert_eq!(admission.in_flight(), 4096);
        assert!(
            admission.try_admit(1).is_none(),
            "the capacity is a hard limit"
        );
        drop(singles);
        drop(flood);
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn a_request_is_admitted_whole_or_not_at_all() {
        let admission = admission();
        let _held = admission.try_admit(3000).unwrap();
        assert!(admission.try_admit(100).is_none());
        assert_eq!(admission.in_flight(), 3000, "a refusal takes nothing");
        assert!(
            admission.try_admit(73).is_none(),
            "past the unreserved part"
        );
        assert!(
            admission.try_admit(72).is_some(),
            "exactly fills the unreserved part"
        );
    }

    #[test]
    fn fields_are_given_back_as_they_are_computed_and_the_rest_on_drop() {
        let admission = admission();
        let mut ticket = admission.try_admit(100).unwrap();
        ticket.release(64);
        assert_eq!((ticket.held(), admission.in_flight()), (36, 36));
        ticket.release(1000);
        assert_eq!((ticket.held(), admission.in_flight()), (0, 0));
        let ticket = admission.try_admit(10).unwrap();
        drop(ticket);
        assert_eq!(admission.in_flight(), 0);
    }
}
