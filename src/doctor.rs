//! `bridge doctor`: one line per check.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::config::Config;

/// Runs every check, printing one line each; true when all passed.
pub fn run(config_path: &Path, _account: Option<&str>, out: &mut dyn Write) -> Result<bool> {
    match Config::load(config_path) {
        Ok(_) => {
            writeln!(out, "ok    config {}", config_path.display())?;
            Ok(true)
        }
        Err(err) => {
            writeln!(out, "FAIL  config: {err}")?;
            Ok(false)
        }
    }
}
