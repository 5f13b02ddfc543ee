//! One process per SQLite file: an exclusive lock on a file beside it
//! (`<file>.lock`, holding the process id), taken at start and held for the
//! process's life. A second process on the same file would release the
//! first one's attempts in flight at its start (SQLite has no leases across
//! processes) and attempt them again at the same moment; it fails to start
//! instead, naming the file and the process that holds it.
//!
//! `flock(2)` locks are the kernel's: they end with the process however it
//! ends (a `kill -9` included), so a stale lock file never blocks a start.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::fd::AsRawFd,
};

use super::DbError;

/// The held lock; dropping it lets another process in.
#[derive(Debug)]
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock of the SQLite file `path`, or says who holds it.
    pub(super) fn take(path: &str) -> Result<Self, DbError> {
        let lock_path = format!("{path}.lock");
        let cannot = |e: std::io::Error| DbError::InUse(format!("cannot lock {lock_path}: {e}"));
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(cannot)?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(cannot(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("process {pid}"),
            };
            return Err(DbError::InUse(format!(
                "the SQLite database {path} is in use by {holder} (lock file {lock_path}); \
                 one provisiond process per SQLite file: stop the other one, or use PostgreSQL to run several"
            )));
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(cannot)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_naming_the_holder_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db").display().to_string();
        let first = FileLock::take(&path).unwrap();
        let refused = FileLock::take(&path).unwrap_err().to_string();
        assert!(refused.contains(&path), "{refused}");
        assert!(refused.contains(&format!("process {}", std::process::id())), "{refused}");
        drop(first);
        FileLock::take(&path).expect("free again once the first is dropped");
    }
}
