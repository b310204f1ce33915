//! The one durability step that notes, draft notes and the state store's
//! message pack share: flushing a directory, so that the files created or
//! renamed in it are still there after a crash. It lives below all three
//! because they must not depend on one another (data flows state → notes →
//! generate, never back).

use std::io;
use std::path::Path;

/// Flushes `dir`'s entries to disk, on Unix. Elsewhere (Windows) a
/// directory cannot be opened to flush it, and NTFS journals its entries
/// itself: nothing to do there.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_syncs_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        sync_dir(dir.path()).unwrap();
        #[cfg(unix)]
        assert_eq!(
            sync_dir(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
