//! Process identity and process groups, read from `/proc` and signalled with `kill(2)`.
//!
//! A pid alone is not an identity: once a process exits its pid can be handed to an unrelated
//! process, and signalling that one would be a disaster. So crew records `(pid, start time)`,
//! the start time being field 22 of `/proc/<pid>/stat` (clock ticks since boot, fixed for the
//! life of a process), and trusts a pid only while both match. The value is compared, never
//! interpreted.

use std::path::Path;

/// A process as crew records it: its pid and the start time the OS gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Field 22 (`starttime`) of `/proc/<pid>/stat`, in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The identity of the running process `pid`; `None` when there is no such process (or it
    /// is a zombie: it has exited and only waits to be reaped).
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        let stat = read_stat(pid)?;
        if stat.state == 'Z' || stat.state == 'X' {
            return None;
        }
        Some(ProcessIdentity {
            pid,
            start_time: stat.start_time,
        })
    }

    /// This process.
    pub fn current() -> Option<ProcessIdentity> {
        ProcessIdentity::of(std::process::id())
    }
}

/// Whether `identity` is still running: its pid exists, is not a zombie, and started at the
/// recorded time. A reused pid (same number, other start time) is never mistaken for it.
pub fn is_alive(identity: &ProcessIdentity) -> bool {
    ProcessIdentity::of(identity.pid).is_some_and(|now| now.start_time == identity.start_time)
}

/// What crew reads from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    state: char,
    process_group: i64,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the *last* `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields from 3 (state) on; field n is at index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let process_group = fields.get(5 - 3)?.parse().ok()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat {
        state,
        process_group,
        start_time,
    })
}

/// Whether any process of the group `process_group` is still running (zombies do not count:
/// they have exited and wait only for their parent, possibly an init that never reaps).
pub fn group_alive(process_group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .any(|stat| {
            stat.process_group == i64::from(process_group) && stat.state != 'Z' && stat.state != 'X'
        })
}

/// The signals crew sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Kill,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// Sends `signal` to every process of the group `process_group`. A group that is already gone
/// is not an error.
pub fn signal_group(process_group: u32, signal: Signal) -> std::io::Result<()> {
    let Ok(group) = libc::pid_t::try_from(process_group) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    if group <= 1 {
        // 0 and 1 would signal our own group or every process we may signal: never.
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a process group.
    let result = unsafe { libc::kill(-group, signal.number()) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(error)
    }
}

/// Sends `signal` to the process `identity`, only if it is still that process.
/// `Ok(false)` when it is gone (or its pid now belongs to another process).
pub fn signal_process(identity: &ProcessIdentity, signal: Signal) -> std::io::Result<bool> {
    if !is_alive(identity) {
        return Ok(false);
    }
    let Ok(pid) = libc::pid_t::try_from(identity.pid) else {
        return Ok(false);
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    let result = unsafe { libc::kill(pid, signal.number()) };
    if result == 0 {
        Ok(true)
    } else {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_after_the_last_parenthesis() {
        let mut text = "1234 (we(ird) name) S 1 77 77 0 -1 4194560".to_owned();
        for field in 10..=21 {
            text.push_str(&format!(" {field}"));
        }
        text.push_str(" 987654 8 9\n");
        let stat = parse_stat(&text).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.process_group, 77);
        assert_eq!(stat.start_time, 987654);
    }

    #[test]
    fn this_process_is_alive_and_a_different_start_time_is_not() {
        let me = ProcessIdentity::current().expect("this process");
        assert!(is_alive(&me));
        let reused = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!is_alive(&reused));
    }
}
