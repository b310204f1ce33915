//! `bridge schedule install|uninstall`: a systemd user timer (Linux) or a
//! launchd agent (macOS) that runs `bridge sync` every `schedule.interval`.
//!
//! The unit files are rendered by pure functions so tests can check them
//! without touching the machine's scheduler; install writes them where the
//! platform looks, then asks the scheduler to load them, and says how to
//! check — or, where the scheduler is not reachable (a container, an SSH
//! session without a user bus), what to run later.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::Config;

/// The unit and agent names: one scheduled sync per user.
pub const SYSTEMD_UNIT: &str = "mailbridge-sync";
pub const LAUNCHD_LABEL: &str = "com.mailbridge.sync";

/// The systemd service and timer that run `exe --config config sync`.
pub fn systemd_units(exe: &Path, config: &Path, interval: Duration) -> (String, String) {
    let service = format!(
        "[Unit]\n\
         Description=mailbridge: sync mail into the notes vault\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={} --config {} sync\n\
         # Logs go to the journal: journalctl --user -u {SYSTEMD_UNIT}\n\
         Nice=10\n",
        systemd_quote(exe),
        systemd_quote(config),
    );
    let timer = format!(
        "[Unit]\n\
         Description=mailbridge: sync every {interval}\n\
         \n\
         [Timer]\n\
         OnBootSec=2min\n\
         OnUnitActiveSec={seconds}s\n\
         # Catch up after the machine slept through a run.\n\
         Persistent=true\n\
         Unit={SYSTEMD_UNIT}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        interval = humanize(interval),
        seconds = interval.as_secs().max(60),
    );
    (service, timer)
}

/// The launchd agent that runs `exe --config config sync`.
pub fn launchd_plist(exe: &Path, config: &Path, interval: Duration, log: &Path) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \t<key>Label</key>\n\t<string>{LAUNCHD_LABEL}</string>\n\
         \t<key>ProgramArguments</key>\n\
         \t<array>\n\t\t<string>{}</string>\n\t\t<string>--config</string>\n\t\t<string>{}</string>\n\t\t<string>sync</string>\n\t</array>\n\
         \t<key>StartInterval</key>\n\t<integer>{}</integer>\n\
         \t<key>RunAtLoad</key>\n\t<true/>\n\
         \t<key>ProcessType</key>\n\t<string>Background</string>\n\
         \t<key>StandardOutPath</key>\n\t<string>{}</string>\n\
         \t<key>StandardErrorPath</key>\n\t<string>{}</string>\n\
         </dict>\n\
         </plist>\n",
        xml_escape(&exe.display().to_string()),
        xml_escape(&config.display().to_string()),
        interval.as_secs().max(60),
        xml_escape(&log.display().to_string()),
        xml_escape(&log.display().to_string()),
    )
}

/// Installs the scheduled sync for `config` (whose path must be absolute so
/// the scheduler finds it from any working directory).
pub fn install(config: &Config) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the bridge executable")?;
    let config_path = absolute(&config.path)?;
    let interval = config.schedule.interval;
    if cfg!(target_os = "macos") {
        let agents = home()?.join("Library/LaunchAgents");
        let log = home()?.join("Library/Logs/mailbridge/sync.log");
        std::fs::create_dir_all(log.parent().expect("log has a parent"))?;
        let plist = agents.join(format!("{LAUNCHD_LABEL}.plist"));
        write_file(&plist, &launchd_plist(&exe, &config_path, interval, &log))?;
        println!("wrote {}", plist.display());
        let uid = current_uid();
        let _ = Command::new("launchctl")
            .args([
                "bootout",
                &format!("gui/{uid}"),
                &plist.display().to_string(),
            ])
            .status();
        run_or_explain(Command::new("launchctl").args([
            "bootstrap",
            &format!("gui/{uid}"),
            &plist.display().to_string(),
        ]));
        println!(
            "check it: launchctl print gui/{uid}/{LAUNCHD_LABEL}; logs: {}",
            log.display()
        );
    } else {
        let dir = systemd_user_dir()?;
        let (service, timer) = systemd_units(&exe, &config_path, interval);
        let service_path = dir.join(format!("{SYSTEMD_UNIT}.service"));
        let timer_path = dir.join(format!("{SYSTEMD_UNIT}.timer"));
        write_file(&service_path, &service)?;
        write_file(&timer_path, &timer)?;
        println!("wrote {}", service_path.display());
        println!("wrote {}", timer_path.display());
        let loaded = run_or_explain(Command::new("systemctl").args(["--user", "daemon-reload"]))
            && run_or_explain(Command::new("systemctl").args([
                "--user",
                "enable",
                "--now",
                &format!("{SYSTEMD_UNIT}.timer"),
            ]));
        if !loaded {
            println!(
                "to start it later: systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_UNIT}.timer"
            );
        }
        println!(
            "check it: systemctl --user list-timers {SYSTEMD_UNIT}.timer; logs: journalctl --user -u {SYSTEMD_UNIT}"
        );
    }
    Ok(())
}

/// Removes what `install` put in place; not an error if nothing was there.
pub fn uninstall() -> Result<()> {
    if cfg!(target_os = "macos") {
        let plist = home()?
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist"));
        let _ = Command::new("launchctl")
            .args([
                "bootout",
                &format!("gui/{}", current_uid()),
                &plist.display().to_string(),
            ])
            .status();
        remove_if_present(&plist)?;
    } else {
        let dir = systemd_user_dir()?;
        let _ = Command::new("systemctl")
            .args([
                "--user",
                "disable",
                "--now",
                &format!("{SYSTEMD_UNIT}.timer"),
            ])
            .stderr(std::process::Stdio::null())
            .status();
        remove_if_present(&dir.join(format!("{SYSTEMD_UNIT}.timer")))?;
        remove_if_present(&dir.join(format!("{SYSTEMD_UNIT}.service")))?;
        let _ = Command::new("systemctl")
            .args(["--user", "daemon-reload"])
            .stderr(std::process::Stdio::null())
            .status();
    }
    Ok(())
}

/// Runs a scheduler command; false (with the reason printed) when it fails.
fn run_or_explain(command: &mut Command) -> bool {
    let shown = format!("{command:?}").replace('"', "");
    match command.output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            println!("note: `{shown}` failed: {}", stderr.trim());
            false
        }
        Err(err) => {
            println!("note: cannot run `{shown}`: {err}");
            false
        }
    }
}

fn systemd_user_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home()?.join(".config"),
    };
    Ok(base.join("systemd/user"))
}

fn home() -> Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|dirs| dirs.home_dir().to_path_buf())
        .context("cannot find the home directory")
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(path))
}

fn write_file(path: &Path, content: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            println!("removed {}", path.display());
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn current_uid() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "501".into())
}

/// systemd's quoting for a path in ExecStart (spaces and quotes).
fn systemd_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn humanize(interval: Duration) -> String {
    let secs = interval.as_secs();
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_units_run_sync_with_the_config() {
        let (service, timer) = systemd_units(
            Path::new("/usr/local/bin/bridge"),
            Path::new("/home/me/My Config/config.yaml"),
            Duration::from_secs(900),
        );
        assert!(service.contains(
            "ExecStart=/usr/local/bin/bridge --config \"/home/me/My Config/config.yaml\" sync"
        ));
        assert!(service.contains("Type=oneshot"));
        assert!(timer.contains("OnUnitActiveSec=900s"));
        assert!(timer.contains("Description=mailbridge: sync every 15m"));
        assert!(timer.contains("WantedBy=timers.target"));
    }

    #[test]
    fn plist_escapes_and_sets_the_interval() {
        let plist = launchd_plist(
            Path::new("/opt/b&b/bridge"),
            Path::new("/Users/me/config.yaml"),
            Duration::from_secs(3600),
            Path::new("/Users/me/Library/Logs/mailbridge/sync.log"),
        );
        assert!(plist.contains("<string>/opt/b&amp;b/bridge</string>"));
        assert!(plist.contains("<key>StartInterval</key>\n\t<integer>3600</integer>"));
        assert!(plist.contains(&format!("<string>{LAUNCHD_LABEL}</string>")));
    }
}
