//! Child daemons (Dovecot, Postfix) the harness owns, and small process helpers.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A server process started by the harness, stopped (TERM, then KILL) and
/// reaped when dropped.
pub struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    /// Spawns `command` with stdio detached (Dovecot keeps an inherited stderr
    /// open, which would hang a pipe). The daemon must lead its own process
    /// group: with `own_group` we make it so (Dovecot -F); Postfix's master
    /// calls setsid() itself, which fails for a group leader, so it gets none.
    pub fn spawn(name: &'static str, mut command: Command, own_group: bool) -> Daemon {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if own_group {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({command:?}): {err}"));
        Daemon { name, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the daemon's whole process group (the master alone takes
    /// seconds to shut Dovecot down; the group dies at once), up to 3 s to
    /// exit, then SIGKILL to the group. The group is signalled only while its
    /// leader is alive and unreaped, so its id cannot have been reused.
    pub fn stop(&mut self) {
        let group = self.child.id();
        if self.exited().is_none() {
            let start = Instant::now();
            let mut next_term = start;
            while self.exited().is_none() && start.elapsed() < Duration::from_secs(3) {
                // Again every 200 ms: a daemon caught mid start-up may miss one.
                if Instant::now() >= next_term {
                    signal_group(group, libc::SIGTERM);
                    next_term += Duration::from_millis(200);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.exited().is_none() {
                eprintln!("harness: {} did not stop on SIGTERM; killing it", self.name);
                signal_group(group, libc::SIGKILL);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` to process group `group` (errors, e.g. no such group, are
/// expected and ignored).
fn signal_group(group: u32, signal: libc::c_int) {
    let Ok(group) = libc::pid_t::try_from(group) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; it
    // touches no memory of ours.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// Finds an executable in PATH or the sbin directories (which a non-root
/// PATH often lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/sbin",
                "/usr/local/sbin",
                "/sbin",
                "/usr/bin",
                "/opt/homebrew/sbin",
            ]
            .iter()
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Runs a short command and returns its trimmed stdout, or None on failure.
pub fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// One `/etc/passwd`-style account: name, uid, gid.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks an account up by name (getent, then /etc/passwd).
pub fn lookup_user(name: &str) -> Option<Account> {
    let line = output_of("getent", &["passwd", name]).or_else(|| {
        std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .find(|line| line.split(':').next() == Some(name))
            .map(str::to_string)
    })?;
    let fields: Vec<&str> = line.split(':').collect();
    Some(Account {
        name: fields.first()?.to_string(),
        uid: fields.get(2)?.parse().ok()?,
        gid: fields.get(3)?.parse().ok()?,
    })
}

/// This process's own account (for running servers without root).
pub fn current_account() -> Account {
    let uid = euid();
    let gid = output_of("id", &["-g"])
        .and_then(|gid| gid.parse().ok())
        .unwrap_or(uid);
    let name = output_of("id", &["-un"]).unwrap_or_else(|| uid.to_string());
    Account { name, uid, gid }
}

/// Looks a group's gid up by name.
pub fn lookup_group(name: &str) -> Option<u32> {
    let line = output_of("getent", &["group", name]).or_else(|| {
        std::fs::read_to_string("/etc/group")
            .ok()?
            .lines()
            .find(|line| line.split(':').next() == Some(name))
            .map(str::to_string)
    })?;
    line.split(':').nth(2)?.parse().ok()
}
