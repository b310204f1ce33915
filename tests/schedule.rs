//! `bridge schedule install|uninstall` writes unit files the platform accepts.

use std::path::Path;
use std::process::{Command, Output};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "vault: /tmp\naccounts:\n  work:\n    email: me@example.com\n    imap: { host: 127.0.0.1, security: none }\nschedule:\n  interval: 20m\n",
    )
    .unwrap();
    path
}

#[cfg(target_os = "linux")]
#[test]
fn systemd_timer_is_installed_valid_and_removed() {
    let home = tempfile::tempdir().unwrap();
    let config = config(home.path());
    let bridge = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            // No user bus here: install must still write the files and say how to start them.
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap()
    };
    let output = bridge(&["schedule", "install"]);
    assert!(output.status.success(), "{}", text(&output));
    let units = home.path().join(".config/systemd/user");
    let service = std::fs::read_to_string(units.join("mailbridge-sync.service")).unwrap();
    let timer = std::fs::read_to_string(units.join("mailbridge-sync.timer")).unwrap();
    assert!(
        service.contains(&format!("--config {} sync", config.display())),
        "{service}"
    );
    assert!(service.contains(env!("CARGO_BIN_EXE_bridge")), "{service}");
    assert!(timer.contains("OnUnitActiveSec=1200s"), "{timer}");
    assert!(
        text(&output).contains("systemctl --user"),
        "{}",
        text(&output)
    );

    // systemd's own checker, where the machine has it (Debian's systemd package):
    // it exits 0 even for unknown keys, so any output at all is a complaint.
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let runtime = home.path().join("run");
        std::fs::create_dir_all(&runtime).unwrap();
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--user"])
            .arg(units.join("mailbridge-sync.service"))
            .arg(units.join("mailbridge-sync.timer"))
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", text(&verify));
        assert_eq!(text(&verify).trim(), "", "systemd-analyze verify complains");
    }

    let output = bridge(&["schedule", "uninstall"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!units.join("mailbridge-sync.timer").exists());
    assert!(!units.join("mailbridge-sync.service").exists());
}

#[test]
fn launchd_plist_parses() {
    let dir = tempfile::tempdir().unwrap();
    let plist = mailbridge::schedule::launchd_plist(
        Path::new("/usr/local/bin/bridge"),
        &dir.path().join("my <config>.yaml"),
        std::time::Duration::from_secs(900),
        Path::new("/Users/me/Library/Logs/mailbridge/sync.log"),
    );
    let path = dir.path().join("agent.plist");
    std::fs::write(&path, plist).unwrap();
    // Python's plistlib is a strict reader of Apple's format.
    let check = Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys; p=plistlib.load(open(sys.argv[1],'rb')); \
             assert p['Label']=='com.mailbridge.sync', p; \
             assert p['StartInterval']==900, p; \
             assert p['ProgramArguments'][-1]=='sync', p; \
             assert p['ProgramArguments'][2].endswith('my <config>.yaml'), p; print('ok')",
        ])
        .arg(&path)
        .output()
        .expect("python3 is needed to check the plist (apt-get install python3)");
    assert!(check.status.success(), "{}", text(&check));
}
