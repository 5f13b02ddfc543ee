//! One process per SQLite file: an exclusive lock on a file beside it
//! (`<file>.lock`, holding the process id), taken at start and held for the
//! process's life. A second process on the same file would release the
//! first one's attempts in flight at its start (SQLite has no leases across
//! processes) and attempt them again at the same moment; it fails to start
//! instead, naming the file and the process that holds it.
//!
//! The lock is `flock(2)`'s (std's `File::try_lock` on Linux): the kernel's: they end with the process however it
//! ends (a `kill -9` included), so a stale lock file never blocks a start.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
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
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::Error(e)) => return Err(cannot(e)),
            Err(TryLockError::WouldBlock) => return Err(in_use(&mut file, path, &lock_path)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(cannot)?;
        Ok(Self { _file: file })
    }
}

/// Why `path` cannot be opened: another process holds its lock file (read
/// for the pid it holds).
fn in_use(lock_file: &mut File, path: &str, lock_path: &str) -> DbError {
    let mut holder = String::new();
    let _ = lock_file.read_to_string(&mut holder);
    let holder = match holder.trim() {
        "" => "another process".to_owned(),
        pid => format!("process {pid}"),
    };
    DbError::InUse(format!(
        "the SQLite database {path} is in use by {holder} (lock file {lock_path}); \
         one provisiond process per SQLite file: stop the other one, or use PostgreSQL to run several"
    ))
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
