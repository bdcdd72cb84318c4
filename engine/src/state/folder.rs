//! The embedded store's folder: the owner's alone.

use std::path::Path;

use super::{StateError, StateResult};

/// Creates the embedded store's folder owner-only (0700; its parents as usual) and
/// tightens one this account made earlier with a looser mode: the state and the audit log are
/// nobody else's to read. Another account's folder is refused by name, before the database
/// would fail on it with a bare "permission denied".
pub(super) fn private_dir(dir: &Path) -> StateResult<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let me = nix::unistd::getuid();
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.uid() != me.as_raw()
        && !me.is_root()
    {
        return Err(StateError::NotYours {
            path: dir.display().to_string(),
            owner: crate::runtime::account_name(meta.uid()),
        });
    }
    let cannot_create =
        |e: std::io::Error| StateError::Backend(format!("cannot create {}: {e}", dir.display()));
    // The parents keep the usual mode: the local server's socket may live beside the state.
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(cannot_create)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(cannot_create(e)),
        _ => {}
    }
    let meta = std::fs::metadata(dir)
        .map_err(|e| StateError::Backend(format!("cannot read {}: {e}", dir.display())))?;
    if meta.uid() == me.as_raw() && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            StateError::Backend(format!("cannot make {} owner-only: {e}", dir.display()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_folder_is_owner_only_and_its_parents_are_not() {
        let base = std::env::temp_dir().join(format!("prov-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let state = base.join("data").join("state");
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        // The data folder keeps the usual mode (a group's socket may live in it).
        std::fs::create_dir_all(base.join("usual")).unwrap();
        assert_eq!(mode(&base.join("data")), mode(&base.join("usual")));

        // One made earlier with a looser mode is tightened.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
