//! Bytes in flight, bounded per lane: a document holds its bytes from the moment the source
//! reads it until its rows are written, so memory follows this budget and not the size of the
//! documents.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A lane's budget of bytes in flight.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: usize,
    used: Mutex<usize>,
    freed: Condvar,
    /// Threads blocked in `acquire`.
    waiting: AtomicUsize,
}

impl ByteBudget {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(ByteBudget {
            capacity,
            used: Mutex::new(0),
            freed: Condvar::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` when they fit now. A document larger than the whole budget fits when
    /// nothing else is in flight, so that it still goes through, alone.
    pub fn try_acquire(self: &Arc<Self>, bytes: usize) -> Option<Permit> {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.fits(*used, bytes).then(|| {
            *used += bytes;
            Permit {
                budget: Some(Arc::clone(self)),
                bytes,
            }
        })
    }

    /// Takes `bytes`, waiting until they fit. Only for blocking threads.
    pub fn acquire(self: &Arc<Self>, bytes: usize) -> Permit {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if !self.fits(*used, bytes) {
            // Counted while blocked, so that the writer writes at once whatever of this lane
            // reaches it, instead of holding it for a full write: the bytes this waits for.
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !self.fits(*used, bytes) {
                used = self
                    .freed
                    .wait(used)
                    .unwrap_or_else(|poison| poison.into_inner());
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        *used += bytes;
        Permit {
            budget: Some(Arc::clone(self)),
            bytes,
        }
    }

    /// Whether someone waits for bytes: what holds them must then be written at once.
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    fn fits(&self, used: usize, bytes: usize) -> bool {
        used == 0 || used + bytes <= self.capacity
    }

    fn release(&self, bytes: usize) {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *used -= bytes;
        self.freed.notify_all();
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        *self.used.lock().unwrap()
    }
}

/// Bytes taken from a budget; given back when dropped. Permits of one lane merge.
#[derive(Debug, Default)]
pub struct Permit {
    budget: Option<Arc<ByteBudget>>,
    bytes: usize,
}

impl Permit {
    pub fn merge(&mut self, mut other: Permit) {
        match (&self.budget, other.budget.take()) {
            (None, theirs) => self.budget = theirs,
            (Some(ours), Some(theirs)) => debug_assert!(Arc::ptr_eq(ours, &theirs)),
            (Some(_), None) => {}
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_give_their_bytes_back_and_a_huge_document_goes_alone() {
        let budget = ByteBudget::new(100);
        let mut first = budget.try_acquire(60).unwrap();
        assert!(budget.try_acquire(50).is_none(), "60 + 50 is over 100");
        first.merge(budget.try_acquire(40).unwrap());
        assert_eq!((first.bytes(), budget.used()), (100, 100));
        drop(first);
        assert_eq!(budget.used(), 0);
        let huge = budget.try_acquire(1_000).expect("alone, it fits");
        assert!(budget.try_acquire(1).is_none());
        drop(huge);
        // A blocked acquire is seen as a waiter, and wakes when bytes come back.
        let held = budget.acquire(100);
        assert!(!budget.has_waiters());
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || budget.acquire(30).bytes())
        };
        // No sleep: the waiter is counted before it blocks, and stays counted until it fits.
        while !budget.has_waiters() {
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(waiter.join().unwrap(), 30);
        assert!(!budget.has_waiters());
    }
}
