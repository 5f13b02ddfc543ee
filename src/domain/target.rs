//! A handler's target: an HTTP URL or a script inside the scripts directory.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

/// The longest target accepted.
pub const MAX_TARGET_LEN: usize = 2048;

/// Reads an HTTP target: `http://` or `https://` URLs, or `host:port/path`
/// without a scheme (as the VCS form shows it), which becomes `http://…`.
pub fn parse_http_target(input: &str) -> Result<String, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err("Enter the URL to call, e.g. 127.0.0.1:5000/api".into());
    }
    if text.len() > MAX_TARGET_LEN {
        return Err(format!("The URL must be at most {MAX_TARGET_LEN} characters"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("The URL must not contain spaces".into());
    }
    let with_scheme = match text.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            text.to_owned()
        }
        Some((scheme, _)) => {
            return Err(format!("Use an http:// or https:// URL, not {scheme}://"));
        }
        None => format!("http://{text}"),
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| format!("This is not a valid URL: {e}"))?;
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(url.to_string()),
        _ => Err("The URL needs a host, e.g. 127.0.0.1:5000/api".into()),
    }
}

/// Checks a script target and returns the path to store: relative to the
/// scripts directory, without `.` parts. The file must be an executable
/// regular file inside the directory; `..` and symlinks leading out are refused.
pub fn parse_script_target(input: &str, scripts_dir: &Path) -> Result<String, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err("Enter the script's path inside the scripts directory".into());
    }
    if text.len() > MAX_TARGET_LEN {
        return Err(format!("The path must be at most {MAX_TARGET_LEN} characters"));
    }
    let path = Path::new(text);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("The path must not contain `..`".into());
    }
    let dir = scripts_dir
        .canonicalize()
        .map_err(|_| format!("The scripts directory {} does not exist on the server", scripts_dir.display()))?;
    let relative: PathBuf = if path.is_absolute() {
        path.strip_prefix(&dir)
            .or_else(|_| path.strip_prefix(scripts_dir))
            .map_err(|_| format!("The script must be inside the scripts directory {}", dir.display()))?
            .to_path_buf()
    } else {
        path.components().filter(|c| matches!(c, Component::Normal(_))).collect()
    };
    if relative.as_os_str().is_empty() {
        return Err("Name a script file, not the directory".into());
    }
    resolve_script(&dir, &relative)?;
    relative.to_str().map(str::to_owned).ok_or_else(|| "The path must be valid UTF-8".into())
}

/// Resolves a stored script target to the file to execute, checking again that
/// it is an executable file inside the scripts directory (it may have changed).
pub fn resolve_script(scripts_dir: &Path, relative: &Path) -> Result<PathBuf, String> {
    let dir = scripts_dir
        .canonicalize()
        .map_err(|_| format!("The scripts directory {} does not exist", scripts_dir.display()))?;
    let file = dir
        .join(relative)
        .canonicalize()
        .map_err(|_| format!("There is no file {} in the scripts directory", relative.display()))?;
    if !file.starts_with(&dir) {
        return Err("The path leads outside the scripts directory".into());
    }
    let meta = file.metadata().map_err(|e| format!("Cannot read {}: {e}", relative.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", relative.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable (chmod +x)", relative.display()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::symlink};

    #[test]
    fn http_target_gets_a_scheme_when_it_has_none() {
        assert_eq!(parse_http_target("127.0.0.1:5000/api").unwrap(), "http://127.0.0.1:5000/api");
        assert_eq!(parse_http_target("localhost:5000/api").unwrap(), "http://localhost:5000/api");
        assert_eq!(parse_http_target(" https://x.example/hook ").unwrap(), "https://x.example/hook");
        assert_eq!(parse_http_target("HTTP://x.example/a?b=1").unwrap(), "http://x.example/a?b=1");
    }

    #[test]
    fn http_target_refuses_other_schemes_and_garbage() {
        for bad in ["", "   ", "ftp://x/y", "javascript://alert(1)", "http://", "http:// x", "a b", "http://[::1"] {
            assert!(parse_http_target(bad).is_err(), "{bad:?}");
        }
        assert!(parse_http_target(&format!("x.example/{}", "a".repeat(3000))).is_err());
    }

    fn scripts() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        for (name, mode) in [("run.sh", 0o755), ("sub/deep.sh", 0o755), ("plain.txt", 0o644)] {
            let p = dir.path().join(name);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    #[test]
    fn script_target_resolves_inside_the_directory() {
        let dir = scripts();
        assert_eq!(parse_script_target("run.sh", dir.path()).unwrap(), "run.sh");
        assert_eq!(parse_script_target("./sub/deep.sh", dir.path()).unwrap(), "sub/deep.sh");
        let abs = dir.path().join("run.sh");
        assert_eq!(parse_script_target(abs.to_str().unwrap(), dir.path()).unwrap(), "run.sh");
    }

    #[test]
    fn script_target_refuses_escapes_and_non_executables() {
        let dir = scripts();
        let outside = tempfile::tempdir().unwrap();
        let evil = outside.path().join("evil.sh");
        fs::write(&evil, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
        symlink(&evil, dir.path().join("link.sh")).unwrap();
        for bad in ["", "../run.sh", "sub/../../x", "missing.sh", "plain.txt", "sub", "link.sh", evil.to_str().unwrap()]
        {
            assert!(parse_script_target(bad, dir.path()).is_err(), "{bad:?}");
        }
    }
}
