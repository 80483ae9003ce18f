//! Locks held for the life of a process: `flock(2)` through [`std::fs::File::try_lock`], which the
//! kernel releases when the process dies, `kill -9` included. So "is anyone still doing this?"
//! has an answer that no crash can leave stale, and that no reused pid can fake.
//!
//! Two are used:
//! - **the supervisor lock**, `.crew/supervisor.lock` in a worktree, held by `crew supervise`
//!   for as long as it runs: at most one supervisor per worktree, and "is this worker's
//!   supervisor alive" without trusting any recorded pid;
//! - **the dispatch lock** of an issue, in the clone's git directory, held by `crew dispatch`
//!   while it places a worker: a second dispatch of the same issue on this host knows the first
//!   is still working (and exits 4) rather than mistaking it for a crashed one and resuming it.
//!   The supervisor it starts inherits the lock and lets go of it only once it holds its own
//!   supervisor lock, so there is no instant, even with the dispatch killed right after the
//!   spawn, at which neither lock is held for a worker being placed ([`adopt_inherited`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::workspace::CREW_DIR;

/// The supervisor lock's file in a worktree.
pub const SUPERVISOR_LOCK: &str = "supervisor.lock";

/// A lock this process holds until it is dropped (or dies).
#[derive(Debug)]
pub struct HeldLock {
    _file: File,
    path: PathBuf,
}

impl HeldLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor through which this process holds the lock: a child that inherits it
    /// holds the same lock (`flock` belongs to the open file, not the process) until the last
    /// holder closes it or dies.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._file)
    }
}

/// A lock inherited from the process that started this one (descriptor `fd`, which that
/// process left open across `exec`), taken over so it is released when dropped, and closed on
/// any further `exec` so no grandchild keeps it. `None` when `fd` is not an open file.
pub fn adopt_inherited(fd: std::os::fd::RawFd) -> Option<HeldLock> {
    use std::os::fd::FromRawFd;
    // Only descriptors past stdio, and only when open: never take over something else.
    // SAFETY: fcntl on any integer is sound (it fails with EBADF for a closed one).
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: as above; setting FD_CLOEXEC only affects later execs.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the descriptor is open and was handed to this process for it to own (the
    // starter passed its number for this purpose and nothing else here uses it).
    let file = unsafe { File::from_raw_fd(fd) };
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .unwrap_or_else(|_| PathBuf::from(format!("inherited descriptor {fd}")));
    Some(HeldLock { _file: file, path })
}

/// Takes the exclusive lock on `path` (creating the file and its directory) if nobody holds it:
/// `Ok(None)` when somebody does.
pub fn try_lock(path: &Path) -> std::io::Result<Option<HeldLock>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(HeldLock {
            _file: file,
            path: path.to_path_buf(),
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(error)) => Err(error),
    }
}

/// [`try_lock`], retried for up to `patience`: a probe ([`is_locked`]) holds a lock for
/// microseconds, and must not make a starting supervisor believe another one runs.
pub fn lock_within(path: &Path, patience: Duration) -> std::io::Result<Option<HeldLock>> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(held) = try_lock(path)? {
            return Ok(Some(held));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether some process holds the lock on `path` now. A missing file is not locked.
pub fn is_locked(path: &Path) -> std::io::Result<bool> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(error)) => Err(error),
    }
}

/// `.crew/supervisor.lock` of `worktree`.
pub fn supervisor_lock_path(worktree: &Path) -> PathBuf {
    worktree.join(CREW_DIR).join(SUPERVISOR_LOCK)
}

/// How long a starting supervisor waits for its worktree's lock: a probe ([`is_locked`]) holds
/// it for microseconds, a live supervisor for good.
pub const SUPERVISOR_LOCK_PATIENCE: Duration = Duration::from_secs(1);

/// Takes `worktree`'s supervisor lock for the life of this process (off the async runtime's
/// threads: it may wait [`SUPERVISOR_LOCK_PATIENCE`]); `None` when another supervisor holds it.
pub async fn take_supervisor_lock(worktree: &Path) -> std::io::Result<Option<HeldLock>> {
    let path = supervisor_lock_path(worktree);
    tokio::task::spawn_blocking(move || lock_within(&path, SUPERVISOR_LOCK_PATIENCE))
        .await
        .map_err(std::io::Error::other)?
}

/// Whether a supervisor runs for `worktree` (it holds the supervisor lock). An unreadable lock
/// file counts as running: crew never starts a second supervisor on a guess.
pub fn supervisor_running(worktree: &Path) -> bool {
    is_locked(&supervisor_lock_path(worktree)).unwrap_or(true)
}

/// The dispatch lock of `issue` for the clone at `repo_root`: `crew/dispatch-<issue>.lock` in
/// the repository's common git directory (shared by all its worktrees, never committed).
pub fn dispatch_lock_path(repo_root: &Path, issue: u64) -> PathBuf {
    let common = git2::Repository::open(repo_root)
        .map(|repo| repo.commondir().to_path_buf())
        .unwrap_or_else(|_| repo_root.join(".git"));
    common.join("crew").join(format!("dispatch-{issue}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_until_dropped_and_probing_does_not_take_it() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub").join("x.lock");
        assert!(!is_locked(&path)?, "a missing file is not locked");
        let held = try_lock(&path)?.ok_or_else(|| std::io::Error::other("not taken"))?;
        assert_eq!(held.path(), path);
        assert!(is_locked(&path)?);
        assert!(try_lock(&path)?.is_none(), "taken twice");
        drop(held);
        assert!(!is_locked(&path)?);
        assert!(lock_within(&path, Duration::from_millis(50))?.is_some());
        Ok(())
    }

    #[test]
    fn a_lock_held_by_a_killed_process_is_free() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.lock");
        // flock from another process, which is then killed with SIGKILL.
        let mut child = std::process::Command::new("flock")
            .arg("-o")
            .arg(&path)
            .args(["sleep", "30"])
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_locked(&path)? {
            assert!(Instant::now() < deadline, "flock never took the lock");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        child.wait()?;
        // `-o`: `sleep` did not inherit the descriptor, so the lock died with its holder.
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_locked(&path)? {
            assert!(Instant::now() < deadline, "the lock outlived its holders");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}
