//! The script call of a handler (DESIGN §4.6): the file is executed directly
//! (no shell) in the scripts directory with the envelope on stdin; success is
//! exit status 0 within the timeout.
//!
//! What runs is the file that was checked: [`open_script`] opens it without
//! following a link and checks the descriptor, and that descriptor is
//! executed (through `/proc/<server>/fd/<n>`, held open until the script
//! ends), so a file swapped in after the check is never run. After every
//! attempt — success, failure or timeout — the script's process group is
//! killed, and so is every process still carrying the attempt's variables
//! (a child that started a session of its own to escape the group).

use std::{
    os::{fd::AsRawFd, unix::process::ExitStatusExt},
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::Command,
};

use super::outcome::{Answer, AttemptResult, Capture, Outcome};
use crate::{db::claims::Claimed, domain::target::open_script};

/// The variable that marks the processes of one run of a script.
const RUN_ID: &str = "PROVISIOND_RUN_ID";

/// How long the output of a script's leftovers is waited for once the
/// script has ended and its processes are killed.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Variables passed through from the server's environment; nothing else is
/// (the server's own settings, such as its API token, stay private).
const PASSED_THROUGH: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

pub async fn run(scripts_dir: &Path, delivery: &Claimed, attempt: i32, timeout: Duration) -> AttemptResult {
    let started = Instant::now();
    let env = vec![
        ("PROVISIOND_EVENTS_ID".to_owned(), delivery.events_id.clone()),
        ("PROVISIOND_OBJECT_ID".to_owned(), delivery.object_id.clone()),
        ("PROVISIOND_DELIVERY_ID".to_owned(), delivery.id.to_string()),
        ("PROVISIOND_ATTEMPT".to_owned(), attempt.to_string()),
        // Unique to this run: what carries it after the attempt is a leftover.
        (RUN_ID.to_owned(), uuid::Uuid::new_v4().simple().to_string()),
    ];
    let answer = match open_script(scripts_dir, Path::new(&delivery.target)) {
        Ok(file) => execute(file, scripts_dir, delivery, &env, timeout).await,
        Err(reason) => script_failure(None, String::new(), reason),
    };
    let mark = env.iter().find(|(k, _)| k == RUN_ID).map(|(k, v)| format!("{k}={v}")).unwrap_or_default();
    // Whatever the script left running dies with its attempt.
    let _ = tokio::task::spawn_blocking(move || kill_leftovers(&mark)).await;
    answer.sent(env, started.elapsed())
}

async fn execute(
    file: std::fs::File,
    dir: &Path,
    delivery: &Claimed,
    env: &[(String, String)],
    timeout: Duration,
) -> Answer {
    // The checked descriptor, by its name in this process; `file` stays open
    // until the script ends (an interpreter opens it by that name).
    let executable = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
    let mut child = match command(&executable, &delivery.target, dir, env).spawn() {
        Ok(child) => child,
        Err(e) => return script_failure(None, String::new(), format!("cannot start {}: {e}", delivery.target)),
    };
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let payload = delivery.payload.clone();
    let writer = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A script that does not read its input is fine: ignore a closed pipe.
            let _ = stdin.write_all(payload.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
        drop(stdin);
    };
    // The output is collected as it comes, so a script killed at its
    // timeout keeps what it printed.
    let (out, err) = (Arc::new(Mutex::new(Capture::default())), Arc::new(Mutex::new(Capture::default())));
    let drains = tokio::spawn({
        let (stdout, stderr, out, err) = (child.stdout.take(), child.stderr.take(), out.clone(), err.clone());
        async move { tokio::join!(drain(stdout, out), drain(stderr, err)) }
    });
    let work = async { tokio::join!(writer, child.wait()).1 };
    let ended = tokio::time::timeout(timeout, work).await;
    // The group goes after every attempt, not only at a timeout: nothing it
    // started in the background outlives it.
    kill_group(pid);
    let status = match ended {
        Ok(status) => Some(status),
        Err(_) => {
            let _ = child.wait().await;
            None
        }
    };
    drop(file);
    // The pipes close once every process holding them is gone.
    let _ = tokio::time::timeout(OUTPUT_GRACE, drains).await;
    let take = |c: &Arc<Mutex<Capture>>| std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner()));
    let output = combine(take(&out), take(&err));
    match status {
        Some(Ok(status)) => exited(status, output),
        Some(Err(e)) => script_failure(None, output, format!("cannot wait for the script: {e}")),
        None => {
            let why = format!(
                "the script did not finish within the handler's timeout of {} ms; its process group was killed",
                timeout.as_millis()
            );
            Answer::failure(Outcome::Timeout, None, output, why)
        }
    }
}

/// The script run directly (no shell) in the scripts directory, with only
/// the variables of DESIGN §4.6 and those passed through, in a process group
/// of its own (killed whole after the attempt); `argv[0]` is its target.
fn command(executable: &str, target: &str, dir: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(executable);
    command
        .arg0(target)
        .current_dir(dir)
        .env_clear()
        .envs(PASSED_THROUGH.iter().filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// The answer of a script that exited: success only with status 0.
fn exited(status: std::process::ExitStatus, output: String) -> Answer {
    match (status.code(), status.signal()) {
        (Some(0), _) => Answer::success(0, output),
        (Some(code), _) => script_failure(Some(code), output, format!("the script exited with status {code}")),
        (None, Some(signal)) => script_failure(None, output, format!("the script was killed by signal {signal}")),
        (None, None) => script_failure(None, output, "the script ended without a status".into()),
    }
}

/// Kills the script and everything it started (its process group).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group the
        // child leads (it was started with process_group(0)); no memory is touched.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Kills every process of this user whose environment holds `mark` (the
/// run's `PROVISIOND_RUN_ID=…`): what a script started and detached
/// (`setsid`, a double fork) out of its process group. A process that clears
/// its environment escapes this; one that keeps it does not.
fn kill_leftovers(mark: &str) {
    use std::os::unix::fs::MetadataExt;
    if mark.is_empty() {
        return;
    }
    // SAFETY: getuid(2) cannot fail and touches no memory.
    #[allow(unsafe_code)]
    let me = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if entry.metadata().map_or(true, |m| m.uid() != me) || pid == std::process::id() as i32 {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|var| var == mark.as_bytes()) {
            // SAFETY: kill(2) signals a process; no memory is touched.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Reads a pipe to its end into `capture` (past the cap too, so the script
/// never blocks on a full pipe).
async fn drain(pipe: Option<impl AsyncRead + Unpin>, capture: Arc<Mutex<Capture>>) {
    if let Some(mut pipe) = pipe {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            capture.lock().unwrap_or_else(|e| e.into_inner()).push(&buf[..n]);
        }
    }
}

/// Standard output, then standard error under a marker line when there is any.
fn combine(out: Capture, err: Capture) -> String {
    if err.is_empty() {
        return out.into_text();
    }
    let mut text = out.into_text();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("[stderr]\n");
    text.push_str(&err.into_text());
    let mut capture = Capture::default();
    capture.push(text.as_bytes());
    capture.into_text()
}

fn script_failure(code: Option<i32>, output: String, error: String) -> Answer {
    Answer::failure(Outcome::ScriptError, code, output, error)
}
