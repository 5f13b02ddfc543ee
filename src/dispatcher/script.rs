//! The script call of a handler (DESIGN §4.6): the file is executed directly
//! (no shell) in the scripts directory with the envelope on stdin; success is
//! exit status 0 within the timeout, after which the whole process group is killed.

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::Command,
};

use super::outcome::{Answer, AttemptResult, Capture, Outcome};
use crate::{db::claims::Claimed, domain::target::resolve_script};

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
    ];
    let answer = match resolve_script(scripts_dir, Path::new(&delivery.target)) {
        Ok(file) => execute(&file, scripts_dir, delivery, &env, timeout).await,
        Err(reason) => script_failure(None, String::new(), reason),
    };
    answer.sent(env, started.elapsed())
}

async fn execute(file: &Path, dir: &Path, delivery: &Claimed, env: &[(String, String)], timeout: Duration) -> Answer {
    let mut child = match command(file, dir, env).spawn() {
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
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (_, out, err, status) = tokio::join!(writer, drain(stdout), drain(stderr), child.wait());
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((out, err, Ok(status))) => exited(status, combine(out, err)),
        Ok((_, _, Err(e))) => script_failure(None, String::new(), format!("cannot wait for the script: {e}")),
        Err(_) => {
            kill_group(pid);
            let _ = child.wait().await;
            let why = format!(
                "the script did not finish within the handler's timeout of {} ms; its process group was killed",
                timeout.as_millis()
            );
            Answer::failure(Outcome::Timeout, None, String::new(), why)
        }
    }
}

/// The script run directly (no shell) in the scripts directory, with only
/// the variables of DESIGN §4.6 and those passed through, in a process group
/// of its own (killed whole at a timeout).
fn command(file: &Path, dir: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(file);
    command
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

async fn drain(pipe: Option<impl AsyncRead + Unpin>) -> Capture {
    let mut capture = Capture::default();
    if let Some(mut pipe) = pipe {
        let mut buf = [0u8; 8192];
        // Read to the end even past the cap, so the script never blocks on a full pipe.
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            capture.push(&buf[..n]);
        }
    }
    capture
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
