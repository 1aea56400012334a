//! Native code kept to its owner. A `.cwasm` (precompiled into the plugins folder, or an entry
//! of the compile cache) is machine code that wasmtime runs without verifying it, so such a
//! file is loaded only when:
//! - it and its folder can be written by nobody but their owner, and that owner is this user
//!   or root. A file on a read-only filesystem (a Lambda's `/var/task` and `/opt`) cannot be
//!   written by anyone, whatever its mode says;
//! - it starts with the SHA-256 of the `.wasm` it was compiled from, written by this host when
//!   it compiled it, and that digest is the one of the `.wasm` it stands for (when that
//!   `.wasm` is there to compare with).
//!
//! Anything else is refused with the reason, and the loader compiles the `.wasm` instead.
//! Files are written through a fresh temporary file in the same folder, created exclusively
//! (never through a file or link planted there), with their mode set whatever the umask.

use std::fs::{File, Metadata, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The SHA-256 of a `.wasm`.
pub(super) type WasmDigest = [u8; 32];

/// The first bytes of every native code file this host writes (a name and a format version),
/// followed by the [`WasmDigest`] of the `.wasm` it was compiled from, then wasmtime's
/// serialized component.
const MAGIC: &[u8; 16] = b"aurora-native/1\n";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Mode bits that let others than the owner write.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// The mode of a compile cache folder and of its entries: the user's alone.
pub(super) const PRIVATE_FOLDER: u32 = 0o700;
pub(super) const PRIVATE_FILE: u32 = 0o600;
/// The mode of a precompiled plugin: readable by all (a Lambda runs as another user than the
/// one who built the zip), writable by its owner alone.
pub(super) const SHARED_FILE: u32 = 0o644;

pub(super) fn wasm_digest(wasm: &[u8]) -> WasmDigest {
    Sha256::digest(wasm).into()
}

pub(super) fn hex(digest: &WasmDigest) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A native code file's contents, read after its owner and permissions were checked.
pub(super) struct NativeFile {
    bytes: Vec<u8>,
}

impl NativeFile {
    /// wasmtime's serialized component.
    pub(super) fn native_code(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// Refuses the file unless it was compiled from the `.wasm` of digest `wasm`.
    pub(super) fn check_compiled_from(&self, wasm: &WasmDigest) -> Result<(), String> {
        let recorded = &self.bytes[MAGIC.len()..HEADER_LEN];
        if recorded == wasm {
            return Ok(());
        }
        Err(format!(
            "it was compiled from another .wasm (SHA-256 {}) than the one it stands for ({}); precompile it again",
            hex(recorded.try_into().expect("32 bytes")),
            hex(wasm)
        ))
    }
}

/// Reads a native code file, refusing it (with the reason) unless only its owner, this user or
/// root, can write it and the folder it is in, and unless this host wrote it with the digest
/// of its `.wasm`. The checks are made on the very file that is read (its open descriptor), so
/// it cannot be swapped between the check and the read.
pub(super) fn read_trusted(path: &Path) -> Result<NativeFile, String> {
    let real =
        std::fs::canonicalize(path).map_err(|error| format!("cannot resolve it: {error}"))?;
    let named_folder = folder_of(path);
    check_folder(named_folder)?;
    // A link may lead into another folder, which must be kept to its owner too.
    let real_folder = folder_of(&real);
    if std::fs::canonicalize(named_folder).ok().as_deref() != Some(real_folder) {
        check_folder(real_folder)?;
    }
    let mut file = File::open(&real).map_err(|error| format!("cannot open it: {error}"))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("cannot inspect it: {error}"))?;
    if !metadata.is_file() {
        return Err("it is not a regular file".into());
    }
    check_kept_to_owner("it", &metadata, is_read_only(&file))?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read it: {error}"))?;
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(
            "it does not carry the digest of the .wasm it was compiled from (this host's `bootstrap --precompile` writes it)"
                .into(),
        );
    }
    Ok(NativeFile { bytes })
}

/// Refuses a folder of native code that others than its owner can change, or whose owner is
/// neither this user nor root.
pub(super) fn check_folder(folder: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(folder)
        .map_err(|error| format!("cannot inspect its folder {}: {error}", folder.display()))?;
    let read_only = File::open(folder).is_ok_and(|opened| is_read_only(&opened));
    check_kept_to_owner(
        &format!("its folder {}", folder.display()),
        &metadata,
        read_only,
    )
}

fn check_kept_to_owner(what: &str, metadata: &Metadata, read_only: bool) -> Result<(), String> {
    let owner = metadata.uid();
    let me = rustix::process::geteuid().as_raw();
    if owner != me && owner != 0 {
        return Err(format!(
            "{what} is owned by uid {owner}, neither this user (uid {me}) nor root"
        ));
    }
    let mode = metadata.permissions().mode();
    if mode & WRITABLE_BY_OTHERS != 0 && !read_only {
        return Err(format!(
            "{what} can be written by others than its owner (mode {:o}; `chmod go-w` it)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// The folder a file is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    }
}

/// Whether the file sits on a filesystem mounted read-only: then nobody can write it.
fn is_read_only(file: &File) -> bool {
    rustix::fs::fstatvfs(file)
        .is_ok_and(|stats| stats.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Creates the compile cache folder for this user alone (mode 0700 whatever the umask) when it
/// does not exist yet.
pub(super) fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    if folder.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_FOLDER)
        .create(folder)?;
    std::fs::set_permissions(folder, Permissions::from_mode(PRIVATE_FOLDER))
}

/// Writes native code compiled from the `.wasm` of digest `compiled_from` to `path` with the
/// given mode (whatever the umask). It goes through a new temporary file of a random name in
/// the same folder, created exclusively (so nothing planted there is written through), and a
/// rename: a reader sees the whole file or none, and a mapped file is never written over.
pub(super) fn write(
    path: &Path,
    compiled_from: &WasmDigest,
    native_code: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let folder = folder_of(path);
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        ))
        .suffix(".tmp")
        .tempfile_in(folder)?;
    temporary
        .as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temporary.write_all(MAGIC)?;
    temporary.write_all(compiled_from)?;
    temporary.write_all(native_code)?;
    temporary.as_file().sync_data()?;
    temporary.persist(path).map_err(|error| error.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_is_private_carries_its_digest_and_never_follows_a_planted_link() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("entry.cwasm");
        let digest = wasm_digest(b"the wasm");
        // A file planted where a predictable temporary name would be is never written through.
        let victim = folder.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, folder.path().join(".entry.cwasm.tmp")).unwrap();

        write(&path, &digest, b"native", PRIVATE_FILE).unwrap();

        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.is_file());
        assert_eq!(metadata.permissions().mode() & 0o777, PRIVATE_FILE);
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        let read = read_trusted(&path).unwrap();
        assert_eq!(read.native_code(), b"native");
        read.check_compiled_from(&digest).unwrap();
        let other = read
            .check_compiled_from(&wasm_digest(b"another wasm"))
            .unwrap_err();
        assert!(other.contains("compiled from another .wasm"), "{other}");
    }

    #[test]
    fn files_and_folders_that_others_can_write_are_refused() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("entry.cwasm");
        write(&path, &wasm_digest(b"x"), b"native", PRIVATE_FILE).unwrap();

        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let error = read_trusted(&path).err().unwrap();
        assert!(error.contains("written by others"), "{error}");

        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(folder.path(), Permissions::from_mode(0o777)).unwrap();
        let error = read_trusted(&path).err().unwrap();
        assert!(error.contains("its folder"), "{error}");

        std::fs::set_permissions(folder.path(), Permissions::from_mode(0o700)).unwrap();
        std::fs::write(&path, b"no header").unwrap();
        let error = read_trusted(&path).err().unwrap();
        assert!(error.contains("does not carry the digest"), "{error}");
    }

    #[test]
    fn a_new_cache_folder_is_private_whatever_the_umask() {
        let parent = tempfile::tempdir().unwrap();
        let folder = parent.path().join("a/b");
        create_private_folder(&folder).unwrap();
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, PRIVATE_FOLDER);
        check_folder(&folder).unwrap();
    }
}
