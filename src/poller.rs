//! The poller: level-triggered epoll plus an eventfd that wakes the loop from other threads.
//!
//! Level-triggered on purpose: `add_reader` promises the callback again on every iteration
//! while the fd stays readable, even if the callback reads only part of the data; mio only
//! offers edge-triggered registration, so this uses rustix's epoll directly. The one exception
//! is an fd whose only waiter is a `sock_recv`/`sock_sendall` wait: it is registered one-shot
//! (see `Registration`), since the wait is over or re-armed after each event anyway.
//! Rust because it runs once per loop iteration and once per I/O event.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;
use rustix::time::Timespec;

/// Event data that marks the waker's eventfd; real fds are non-negative `i32`s.
const WAKER_TOKEN: u64 = u64::MAX;
/// asyncio caps one wait at a day; longer waits gain nothing and can overflow timespecs.
const MAX_TIMEOUT_SECS: f64 = 24.0 * 3600.0;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    fn flags(self) -> EventFlags {
        let mut flags = EventFlags::empty();
        if self.read {
            flags |= EventFlags::IN;
        }
        if self.write {
            flags |= EventFlags::OUT;
        }
        flags
    }

    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

/// What the kernel holds for one fd, as far as the loop knows: whether an epoll item exists,
/// what it reports, and whether it is one-shot. A one-shot item that fired stays in the
/// kernel disarmed (`present`, nothing `armed`): it reports nothing at all, not even errors
/// or hang-ups, until it is re-armed, so it can stay there harmlessly, and re-arming it
/// (`EPOLL_CTL_MOD`) is cheaper than deleting it and adding it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registration {
    pub present: bool,
    pub armed: Interest,
    pub oneshot: bool,
}

impl Registration {
    /// The registration after the kernel reported an event for it.
    pub fn fired(self) -> Self {
        if self.oneshot {
            Self {
                armed: Interest::default(),
                ..self
            }
        } else {
            self
        }
    }
}

/// One readiness report: which fd, and whether its reader / writer should run. Errors and
/// hang-ups wake both sides, as asyncio's selectors do, so the callback sees the failure.
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
}

/// The buffer epoll writes its events into, reused across waits.
#[derive(Default)]
pub struct EventBuffer(Vec<Event>);

// SAFETY: `Event` is not `Send` only because its user data may hold a pointer; we only ever
// store integers (fd numbers and the waker token) there, so moving the buffer is plain data.
unsafe impl Send for EventBuffer {}

impl EventBuffer {
    pub fn with_capacity(events: usize) -> Self {
        Self(Vec::with_capacity(events))
    }

    /// Makes room for `events` reports in one wait (the buffer only grows).
    pub fn reserve(&mut self, events: usize) {
        self.0.reserve(events.saturating_sub(self.0.len()));
    }
}

pub struct Poller {
    // Raw fds (not `OwnedFd`) so `wait` can use them while the GIL is released and no borrow
    // of the loop state is held; -1 once closed. Closing happens only while the loop is not
    // running (the loop refuses to close while running), so no wait can be using them then.
    epoll: AtomicI32,
    waker: AtomicI32,
}

fn into_raw(fd: OwnedFd) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(fd)
}

fn closed_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let epoll_fd = epoll::create(CreateFlags::CLOEXEC)?;
        let waker_fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll_fd,
            &waker_fd,
            EventData::new_u64(WAKER_TOKEN),
            EventFlags::IN,
        )?;
        Ok(Self {
            epoll: AtomicI32::new(into_raw(epoll_fd)),
            waker: AtomicI32::new(into_raw(waker_fd)),
        })
    }

    fn epoll_fd(&self) -> io::Result<BorrowedFd<'_>> {
        let raw = self.epoll.load(Ordering::Acquire);
        if raw < 0 {
            return Err(closed_error());
        }
        // SAFETY: `raw` is our epoll fd, open until `close`, which only runs when no other
        // method can be in progress (see the field comment).
        Ok(unsafe { BorrowedFd::borrow_raw(raw) })
    }

    /// Registers `fd` for `wanted` (one-shot if `oneshot`), given what the kernel holds for it
    /// now; returns what it holds after. An armed item that is no longer wanted is deleted;
    /// a disarmed one-shot item is left in place (see `Registration`). A wanted interest is
    /// always written, even if `current` says it is there: the fd may have been closed and its
    /// number reused since, which took the old item out of the set.
    pub fn register(
        &self,
        fd: RawFd,
        current: Registration,
        wanted: Interest,
        oneshot: bool,
    ) -> io::Result<Registration> {
        let epoll_fd = self.epoll_fd()?;
        // SAFETY: the kernel only reads the fd number for epoll_ctl; a closed or foreign fd
        // makes the call fail with EBADF, which is returned to the caller.
        let target = unsafe { BorrowedFd::borrow_raw(fd) };
        if wanted.is_empty() {
            if current.armed.is_empty() {
                return Ok(current);
            }
            return match epoll::delete(epoll_fd, target) {
                // The fd was closed (the kernel dropped it from the set) or never made it in:
                // either way it is no longer watched, which is what the caller asked for.
                Ok(()) | Err(Errno::BADF | Errno::NOENT) => Ok(Registration::default()),
                Err(err) => Err(err.into()),
            };
        }
        let data = EventData::new_u64(fd as u64);
        let mut flags = wanted.flags();
        if oneshot {
            flags |= EventFlags::ONESHOT;
        }
        let result = if current.present {
            match epoll::modify(epoll_fd, target, data, flags) {
                // The fd was closed and reopened under the same number since registration.
                Err(Errno::NOENT) => epoll::add(epoll_fd, target, data, flags),
                other => other,
            }
        } else {
            match epoll::add(epoll_fd, target, data, flags) {
                // The fd number is still registered from an earlier life of the number.
                Err(Errno::EXIST) => epoll::modify(epoll_fd, target, data, flags),
                other => other,
            }
        };
        result?;
        Ok(Registration {
            present: true,
            armed: wanted,
            oneshot,
        })
    }

    /// Waits for events for at most `timeout` seconds (`None`: until one arrives), appending
    /// readiness reports to `out`. Returns `Ok(false)` when interrupted by a signal, so the
    /// caller can run Python's signal handlers. Draining the waker is done here.
    pub fn wait(
        &self,
        buf: &mut EventBuffer,
        timeout: Option<f64>,
        out: &mut Vec<Readiness>,
    ) -> io::Result<bool> {
        let epoll_fd = self.epoll_fd()?;
        let timespec = timeout.map(|secs| {
            let secs = secs.clamp(0.0, MAX_TIMEOUT_SECS);
            Timespec {
                tv_sec: secs.trunc() as i64,
                tv_nsec: (secs.fract() * 1e9) as i64,
            }
        });
        let buf = &mut buf.0;
        buf.clear();
        match epoll::wait(epoll_fd, spare_capacity(buf), timespec.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(false),
            Err(err) => return Err(err.into()),
        }
        for event in buf.iter() {
            let token = event.data.u64();
            if token == WAKER_TOKEN {
                self.drain_waker();
                continue;
            }
            let flags = event.flags;
            let failed = flags.intersects(EventFlags::ERR | EventFlags::HUP);
            out.push(Readiness {
                fd: token as RawFd,
                readable: failed || flags.contains(EventFlags::IN),
                writable: failed || flags.contains(EventFlags::OUT),
            });
        }
        Ok(true)
    }

    /// Makes a concurrent or upcoming `wait` return. Safe to call from any thread.
    pub fn wake(&self) -> io::Result<()> {
        let raw = self.waker.load(Ordering::Acquire);
        if raw < 0 {
            return Err(closed_error());
        }
        // SAFETY: our eventfd, open until `close` (see the field comment).
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        match rustix::io::write(fd, &1u64.to_ne_bytes()) {
            // EAGAIN: the counter is saturated, so a wake-up is already pending.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    fn drain_waker(&self) {
        let raw = self.waker.load(Ordering::Acquire);
        if raw < 0 {
            return;
        }
        // SAFETY: as in `wake`.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let mut counter = [0u8; 8];
        // EAGAIN means another wait already drained it: nothing to do either way.
        let _drained = rustix::io::read(fd.as_fd(), &mut counter);
    }

    pub fn is_closed(&self) -> bool {
        self.epoll.load(Ordering::Acquire) < 0
    }

    /// Closes the epoll fd and the eventfd. Idempotent.
    pub fn close(&self) {
        for slot in [&self.epoll, &self.waker] {
            let raw = slot.swap(-1, Ordering::AcqRel);
            if raw >= 0 {
                // SAFETY: we owned `raw` (taken from an `OwnedFd`) and the swap guarantees it
                // is closed exactly once.
                drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    const READ: Interest = Interest {
        read: true,
        write: false,
    };

    fn wait_once(poller: &Poller, timeout: f64) -> Vec<Readiness> {
        let mut buf = EventBuffer::with_capacity(64);
        let mut out = Vec::new();
        assert!(poller.wait(&mut buf, Some(timeout), &mut out).unwrap());
        out
    }

    #[test]
    fn reports_readable_level_triggered() {
        let poller = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let registered = poller
            .register(a.as_raw_fd(), Registration::default(), READ, false)
            .unwrap();
        assert!(wait_once(&poller, 0.0).is_empty());
        std::io::Write::write_all(&mut &b, b"xy").unwrap();
        // Level-triggered: reported again while data stays unread.
        for _ in 0..2 {
            let events = wait_once(&poller, 1.0);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].fd, a.as_raw_fd());
            assert!(events[0].readable);
        }
        poller
            .register(a.as_raw_fd(), registered, Interest::default(), false)
            .unwrap();
        assert!(wait_once(&poller, 0.0).is_empty());
    }

    #[test]
    fn oneshot_reports_once_until_rearmed() {
        let poller = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let registered = poller
            .register(fd, Registration::default(), READ, true)
            .unwrap();
        std::io::Write::write_all(&mut &b, b"xy").unwrap();
        assert_eq!(wait_once(&poller, 1.0).len(), 1);
        let fired = registered.fired();
        assert!(fired.present && fired.armed.is_empty());
        // Disarmed: silent although the data is still there, and dropping it needs no call.
        assert!(wait_once(&poller, 0.0).is_empty());
        assert_eq!(
            poller
                .register(fd, fired, Interest::default(), true)
                .unwrap(),
            fired
        );
        // Re-armed by modifying the item that stayed in the set.
        poller.register(fd, fired, READ, true).unwrap();
        assert_eq!(wait_once(&poller, 1.0).len(), 1);
    }

    #[test]
    fn stale_registration_of_a_reused_fd_number_is_added_again() {
        let poller = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let registered = poller
            .register(fd, Registration::default(), READ, false)
            .unwrap();
        let (c, d) = UnixStream::pair().unwrap();
        // Puts `c`'s socket under `a`'s number, closing `a`'s socket there (which takes its
        // item out of the set), as a close and a reuse of the number would.
        // SAFETY: both fds are open and owned by this test; `a` closes the new one on drop.
        assert_eq!(unsafe { libc::dup2(c.as_raw_fd(), fd) }, fd);
        poller.register(fd, registered, READ, false).unwrap();
        std::io::Write::write_all(&mut &d, b"x").unwrap();
        assert_eq!(wait_once(&poller, 1.0).len(), 1);
    }

    #[test]
    fn wake_from_another_thread_ends_the_wait() {
        let poller = std::sync::Arc::new(Poller::new().unwrap());
        let other = std::sync::Arc::clone(&poller);
        let start = std::time::Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            other.wake().unwrap();
        });
        assert!(wait_once(&poller, 10.0).is_empty());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        thread.join().unwrap();
        // The wake-up was consumed: the next wait times out.
        assert!(wait_once(&poller, 0.0).is_empty());
    }

    #[test]
    fn closed_fd_unregisters_quietly_and_bad_fd_fails() {
        let poller = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let registered = poller
            .register(fd, Registration::default(), READ, false)
            .unwrap();
        drop(a);
        let none = poller
            .register(fd, registered, Interest::default(), false)
            .unwrap();
        assert_eq!(none, Registration::default());
        let err = poller
            .register(1_000_000, Registration::default(), READ, false)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn closed_poller_reports_ebadf() {
        let poller = Poller::new().unwrap();
        poller.close();
        assert!(poller.is_closed());
        assert_eq!(poller.wake().unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
