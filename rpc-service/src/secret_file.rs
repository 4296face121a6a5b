//! Secrets a single-machine deployment generates once and keeps in a file of its own
//! (auth-service's key-encryption key, the registry's CEE signing key).

use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Writes `contents` to a new file at `path` (its directory created if missing) readable by
/// this user only (0600 on Unix), and syncs it to disk. An existing file is never
/// overwritten: two processes generating at once cannot both win.
pub fn create(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_new_and_private() {
        let dir = std::env::temp_dir().join(format!("secret-file-{}", std::process::id()));
        let path = dir.join("nested").join("key.txt");
        create(&path, b"s3cret\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"s3cret\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = create(&path, b"other").unwrap_err();
        assert!(format!("{again:#}").contains("cannot create"), "{again:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"s3cret\n");
        std::fs::remove_dir_all(dir).ok();
    }
}
