//! Sleeping and waking without spinning a core.
//!
//! A shard sleeps in `io_uring_enter` with a read of its eventfd armed; a client that
//! published into one of its rings calls [`Waker::wake`], which writes the eventfd only when
//! the shard said it was going to sleep. Client threads sleep in `thread::park`; a shard
//! that pushed acks or deliveries for them calls [`Parker::unpark`] likewise.
//!
//! Both use the same handshake: the sleeper stores `sleeping = true`, issues a SeqCst fence,
//! re-checks its rings, and only then sleeps; the waker publishes, issues a SeqCst fence, then
//! reads `sleeping`. One of the two always sees the other's store, so no wake-up is lost.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::thread::Thread;

/// Wakes a shard thread.
#[derive(Debug)]
pub(crate) struct Waker {
    eventfd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    pub fn new() -> std::io::Result<Waker> {
        // SAFETY: eventfd has no memory arguments; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            eventfd,
            sleeping: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> i32 {
        self.eventfd.as_raw_fd()
    }

    /// Called by the shard before it re-checks its rings and sleeps.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Called by the shard when it is awake again (or decided not to sleep).
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Called by a client after publishing into one of the shard's rings.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.signal();
        }
    }

    /// Wakes the shard unconditionally (control messages).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Wakes a client thread (a producer waiting for acks, a consumer waiting for records).
#[derive(Debug)]
pub(crate) struct Parker {
    thread: Thread,
    waiting: AtomicBool,
}

impl Parker {
    /// A parker for the calling thread.
    pub fn for_current_thread() -> Parker {
        Parker {
            thread: std::thread::current(),
            waiting: AtomicBool::new(false),
        }
    }

    /// Whether the calling thread is the one this parker wakes.
    pub fn is_current_thread(&self) -> bool {
        self.thread.id() == std::thread::current().id()
    }

    pub fn prepare_park(&self) {
        self.waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    pub fn park(&self, timeout: std::time::Duration) {
        std::thread::park_timeout(timeout);
        self.waiting.store(false, Ordering::Relaxed);
    }

    pub fn cancel_park(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// Called by a shard after pushing into one of this client's rings.
    pub fn unpark(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) && self.waiting.swap(false, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}
