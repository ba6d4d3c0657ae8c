//! Admission: at most `concurrency` syntheses run at once and at most `max_queue` more
//! wait; a request beyond that is answered 429 at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounded queue in front of the engine.
#[derive(Debug)]
pub struct Admission {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
    concurrency: usize,
}

/// A running synthesis' place; dropping it lets the next one in.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_queue` requests wait already.
    QueueFull,
    /// The server is shutting down.
    Closed,
}

/// Decrements the waiting count when a waiter leaves (admitted, or its client went away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// `concurrency` >= 1 syntheses at once, `max_queue` waiting.
    pub fn new(concurrency: usize, max_queue: usize) -> Admission {
        Admission {
            running: Arc::new(Semaphore::new(concurrency)),
            waiting: AtomicUsize::new(0),
            max_queue,
            concurrency,
        }
    }

    /// Waits for a slot, or refuses at once when the queue is full.
    pub async fn admit(&self) -> Result<Slot, Refused> {
        match self.running.clone().try_acquire_owned() {
            Ok(permit) => return Ok(Slot { _permit: permit }),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Refused::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if before >= self.max_queue {
            return Err(Refused::QueueFull);
        }
        match self.running.clone().acquire_owned().await {
            Ok(permit) => Ok(Slot { _permit: permit }),
            Err(_) => Err(Refused::Closed),
        }
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst).min(self.max_queue)
    }

    /// Syntheses running now.
    pub fn running(&self) -> usize {
        self.concurrency - self.running.available_permits().min(self.concurrency)
    }

    /// Refuses every waiter and every later request (shutdown).
    pub fn close(&self) {
        self.running.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_refuses_at_once_and_frees_on_drop() {
        let a = Arc::new(Admission::new(1, 1));
        let first = a.admit().await.unwrap();
        assert_eq!(a.running(), 1);
        let a2 = a.clone();
        let second = tokio::spawn(async move { a2.admit().await.map(|_| ()) });
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.admit().await.unwrap_err(), Refused::QueueFull);
        assert_eq!(a.waiting(), 1);
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(a.waiting(), 0);
        a.close();
        assert_eq!(a.admit().await.unwrap_err(), Refused::Closed);
    }
}
