//! A handler's target: an HTTP URL or a script inside the scripts directory.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

use ipnet::IpNet;

/// The longest target accepted.
pub const MAX_TARGET_LEN: usize = 2048;

/// Where no HTTP attempt may connect (DESIGN §8.4, `PROVISIOND_DENY_TARGETS`):
/// address ranges, checked in every notation an address can be written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList(Vec<IpNet>);

/// Host names of cloud metadata services, refused whatever they resolve to.
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

impl DenyList {
    /// Comma-separated CIDRs (`169.254.0.0/16,fe80::/10`) or single addresses; blank denies nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => part.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("`{part}` is not an address range: write it as a CIDR, e.g. 169.254.0.0/16 or fe80::/10")
                })?,
            };
            nets.push(net.trunc());
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is denied; an IPv6 address that carries an IPv4 one
    /// (`::ffff:a.b.c.d`, `::a.b.c.d`, `64:ff9b::a.b.c.d`, and `::` for
    /// 0.0.0.0) is checked as that IPv4 address too.
    pub fn denies(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.0.iter().any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    /// The reason an HTTP target's host may not be called, if any: a literal
    /// address in a denied range, or a metadata service's name.
    pub fn refusal(&self, url: &url::Url) -> Option<String> {
        let ip = match url.host()? {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                return METADATA_NAMES
                    .contains(&name.as_str())
                    .then(|| format!("{name} is a cloud metadata service; handlers may not call it"));
            }
        };
        self.denies(ip).then(|| format!("The address {ip} is in a range PROVISIOND_DENY_TARGETS denies"))
    }
}

impl std::fmt::Display for DenyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nets: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // NAT64's well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(v4()),
        // IPv4-compatible (deprecated) and `::` itself; `::1` is IPv6's loopback.
        [0, 0, 0, 0, 0, 0, _, _] if ip != Ipv6Addr::LOCALHOST => Some(v4()),
        _ => None,
    }
}

/// Reads an HTTP target: `http://` or `https://` URLs, or `host:port/path`
/// without a scheme (as the VCS form shows it), which becomes `http://…`.
/// A user name or password in it is refused (it would be shown back), and so
/// is a host `deny` refuses.
pub fn parse_http_target(input: &str, deny: &DenyList) -> Result<String, String> {
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
    if !matches!(url.host_str(), Some(host) if !host.is_empty()) {
        return Err("The URL needs a host, e.g. 127.0.0.1:5000/api".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "The URL must not hold a user name or password (user:pass@): it would be shown in the list and the logs; \
             have the endpoint verify the webhook-signature instead"
                .into(),
        );
    }
    match deny.refusal(&url) {
        Some(reason) => Err(reason),
        None => Ok(url.to_string()),
    }
}

/// Checks a script target and returns the path to store: relative to the
/// scripts directory, without `.` parts. The file must be what
/// [`open_script`] runs: an executable regular file inside the directory,
/// reached without a symbolic link, that neither it nor a directory on the
/// way is writable by group or others; `..` is refused.
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
    open_script(&dir, &relative)?;
    relative.to_str().map(str::to_owned).ok_or_else(|| "The path must be valid UTF-8".into())
}

/// Opens a stored script target for execution and checks the opened file,
/// not its name: every component is opened relative to the one before with
/// `O_NOFOLLOW`, so no symbolic link is followed (nor swapped in after the
/// check); the scripts directory, every directory below it on the way and the
/// file must not be writable by group or others; the file must be a regular,
/// executable file. The caller executes this descriptor, never the path.
pub fn open_script(scripts_dir: &Path, relative: &Path) -> Result<std::fs::File, String> {
    let dir = scripts_dir
        .canonicalize()
        .map_err(|_| format!("The scripts directory {} does not exist", scripts_dir.display()))?;
    let mut current =
        std::fs::File::open(&dir).map_err(|e| format!("Cannot open the scripts directory {}: {e}", dir.display()))?;
    check_not_shared(&current, &dir.display().to_string(), "The scripts directory")?;
    let parts: Vec<&std::ffi::OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    let Some((name, dirs)) = parts.split_last() else { return Err("Name a script file, not the directory".into()) };
    let mut walked = PathBuf::new();
    for part in dirs {
        walked.push(part);
        current = open_beneath(&current, part, true).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                format!(
                    "{} is not a directory of the scripts directory (a symbolic link is not followed)",
                    walked.display()
                )
            }
            _ => format!("There is no file {} in the scripts directory", relative.display()),
        })?;
        check_not_shared(&current, &walked.display().to_string(), "The directory")?;
    }
    let file = open_beneath(&current, name, false).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => format!(
            "{} is a symbolic link: scripts run only from files of the scripts directory itself",
            relative.display()
        ),
        _ => format!("There is no file {} in the scripts directory", relative.display()),
    })?;
    let meta = file.metadata().map_err(|e| format!("Cannot read {}: {e}", relative.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", relative.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable (chmod +x)", relative.display()));
    }
    check_not_shared(&file, &relative.display().to_string(), "The script")?;
    Ok(file)
}

/// Refuses what its group or others may write: whoever can write a script
/// or its directory could make the server run their code.
fn check_not_shared(file: &std::fs::File, name: &str, what: &str) -> Result<(), String> {
    let mode = file.metadata().map_err(|e| format!("Cannot read {name}: {e}"))?.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} {name} is writable by its group or others (mode {:o}): anyone who can write it could run code \
             as the server; chmod go-w it",
            mode & 0o777
        ));
    }
    Ok(())
}

/// Opens `name` inside the directory `dir`, never following a symbolic link.
fn open_beneath(dir: &std::fs::File, name: &std::ffi::OsStr, directory: bool) -> std::io::Result<std::fs::File> {
    use std::os::{
        fd::{AsRawFd, FromRawFd},
        unix::ffi::OsStrExt,
    };
    let name = std::ffi::CString::new(name.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::ENOENT))?;
    let mut flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if directory {
        flags |= libc::O_DIRECTORY;
    } else {
        // A FIFO must not block the open.
        flags |= libc::O_NONBLOCK;
    }
    // SAFETY: openat(2) with a descriptor this function borrows for the
    // call, a NUL-terminated name that outlives it, and no mode (no O_CREAT).
    #[allow(unsafe_code)]
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    #[allow(unsafe_code)]
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::symlink};

    fn parse_http(text: &str) -> Result<String, String> {
        parse_http_target(text, &default_deny())
    }

    fn default_deny() -> DenyList {
        DenyList::parse(DEFAULT_DENY).unwrap()
    }

    /// The default of `PROVISIOND_DENY_TARGETS` (DESIGN §8.4).
    const DEFAULT_DENY: &str = "169.254.0.0/16,fe80::/10,0.0.0.0/8";

    #[test]
    fn http_target_gets_a_scheme_when_it_has_none() {
        assert_eq!(parse_http("127.0.0.1:5000/api").unwrap(), "http://127.0.0.1:5000/api");
        assert_eq!(parse_http("localhost:5000/api").unwrap(), "http://localhost:5000/api");
        assert_eq!(parse_http(" https://x.example/hook ").unwrap(), "https://x.example/hook");
        assert_eq!(parse_http("HTTP://x.example/a?b=1").unwrap(), "http://x.example/a?b=1");
    }

    #[test]
    fn http_target_refuses_other_schemes_and_garbage() {
        for bad in ["", "   ", "ftp://x/y", "javascript://alert(1)", "http://", "http:// x", "a b", "http://[::1"] {
            assert!(parse_http(bad).is_err(), "{bad:?}");
        }
        assert!(parse_http(&format!("x.example/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn a_denied_address_is_refused_in_every_notation() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0xA9.0xFE.0xA9.0xFE/",
            "http://0251.0376.0251.0376/",
            "http://025177524776/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[0:0:0:0:0:ffff:169.254.169.254]/",
            "http://[::169.254.169.254]/",
            "http://[64:ff9b::169.254.169.254]/",
            "http://[fe80::1]/",
            "http://[fe80::1%25eth0]/",
            "http://0.0.0.0:8080/",
            "http://0/",
            "http://0x0/",
            "http://[::]/",
            "http://[::ffff:0.0.0.0]/",
            "169.254.169.254:80/x",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.GOOGLE.INTERNAL./x",
        ] {
            let refused = parse_http(bad);
            assert!(refused.is_err(), "{bad} accepted as {refused:?}");
        }
        // Loopback and private ranges stay allowed by default.
        for good in [
            "http://127.0.0.1:5000/",
            "http://[::1]:5000/",
            "http://10.0.0.5/",
            "http://192.168.1.2/",
            "http://2130706433/",
        ] {
            assert!(parse_http(good).is_ok(), "{good}");
        }
        // A configured range is denied in every notation too.
        let deny = DenyList::parse("127.0.0.0/8, 10.1.2.3").unwrap();
        for bad in ["http://127.0.0.1/", "http://2130706433/", "http://[::ffff:7f00:1]/", "http://10.1.2.3/"] {
            assert!(parse_http_target(bad, &deny).is_err(), "{bad}");
        }
        assert!(parse_http_target("http://10.1.2.4/", &deny).is_ok());
        assert_eq!(deny.to_string(), "127.0.0.0/8,10.1.2.3/32");
        assert!(DenyList::parse("10.0.0.0/33").is_err());
        assert!(DenyList::parse("not a range").is_err());
        assert_eq!(DenyList::parse(" ").unwrap(), DenyList::default());
    }

    #[test]
    fn credentials_in_a_target_are_refused() {
        for bad in ["http://user:pass@x.example/hook", "http://user@x.example/", "user:pass@x.example:80/"] {
            let message = parse_http(bad).unwrap_err();
            assert!(message.contains("user name or password"), "{bad}: {message}");
        }
    }

    fn scripts() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        // Whatever the umask: a directory others may write is refused.
        fs::set_permissions(dir.path().join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
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

    #[test]
    fn a_script_others_may_write_or_reached_through_a_link_is_refused() {
        let dir = scripts();
        let mode = |path: &Path, mode: u32| fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        mode(&dir.path().join("run.sh"), 0o775);
        let refused = parse_script_target("run.sh", dir.path()).unwrap_err();
        assert!(refused.contains("The script run.sh is writable by its group or others (mode 775)"), "{refused}");
        mode(&dir.path().join("run.sh"), 0o755);
        symlink(dir.path().join("sub"), dir.path().join("via")).unwrap();
        let refused = parse_script_target("via/deep.sh", dir.path()).unwrap_err();
        assert!(refused.contains("a symbolic link is not followed"), "{refused}");
        mode(&dir.path().join("sub"), 0o777);
        assert!(parse_script_target("sub/deep.sh", dir.path()).unwrap_err().contains("The directory sub is writable"));
        mode(&dir.path().join("sub"), 0o755);
        mode(dir.path(), 0o777);
        assert!(parse_script_target("run.sh", dir.path()).unwrap_err().contains("The scripts directory"));
        mode(dir.path(), 0o700);
        assert_eq!(parse_script_target("sub/deep.sh", dir.path()).unwrap(), "sub/deep.sh");
    }
}
