//! Writing output files (WAVs, voice files) deliberately, whatever the path names.
//!
//! [`write_output`] is the one way the library, the C ABI and the CLI write a file. What it
//! does depends on what the path names (links followed):
//!
//! - **nothing, or a regular file**: the bytes go to a temporary file in the same folder
//!   (named `.<name>.<pid>-<counter>-<random>.tmp`, created exclusively, so concurrent
//!   writers — threads or processes — never share one), which is synced, given the
//!   existing file's permission bits (`rwx` for user, group, other; a new file gets
//!   `0666` less the umask), and renamed over the target. Readers see the old file or the
//!   new one, never half of one. The temporary file is removed on any failure. The owner of
//!   a replaced file is not kept (the new file belongs to the writer).
//! - **a symbolic link**: the link's final target is replaced as above; the link stays a
//!   link. A dangling link creates its target.
//! - **a character device or a FIFO** (`/dev/null`, `/dev/stdout` on a terminal, a named
//!   pipe): written in place, never replaced. Opening a FIFO waits for a reader.
//! - **a directory, a block device, a socket**: refused (`InvalidArgument`).
//!
//! An output that is one of the caller's inputs (the same device and inode, or — when one
//! of them does not exist yet — the same path once links and `..` are resolved) is refused
//! with `InvalidArgument` naming both, before anything is written; see
//! [`check_not_an_input`]. Character devices are exempt (`/dev/stdin` and `/dev/stdout` are
//! the same terminal).
//!
//! Errors name the caller's path, never the temporary file, and state their cause once.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// How many symbolic links are followed before giving up (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Temporary-file names are unique per write within a process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` (see the module documentation for what happens to regular
/// files, links, devices and FIFOs), refusing when `path` is one of `inputs`.
///
/// Errors: `InvalidArgument` when `path` is an input, a directory, a block device or a
/// socket, or names no file; `Io` (naming `path`) when writing fails.
pub fn write_output(path: &Path, bytes: &[u8], inputs: &[&Path]) -> Result<()> {
    check_not_an_input(path, inputs)?;
    match plan(path)? {
        Plan::InPlace => write_in_place(path, bytes),
        Plan::Replace { target, mode } => replace(path, &target, bytes, mode),
    }
}

/// Refuses (`InvalidArgument`, naming both) an output `path` that is the same file as one
/// of `inputs`: the same device and inode when both exist, otherwise the same path once
/// symbolic links and `..` are resolved. Character devices are never refused. Call it
/// before expensive work; [`write_output`] calls it again.
pub fn check_not_an_input(path: &Path, inputs: &[&Path]) -> Result<()> {
    for input in inputs {
        if same_file(path, input) {
            return Err(Error::invalid_argument(
                "output",
                format!(
                    "`{}` is the input `{}`; refusing to overwrite an input",
                    path.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// What writing to a path means.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Write a temporary file and rename it over `target` (the path with links resolved);
    /// `mode` is the permission bits of the file being replaced, if any.
    Replace { target: PathBuf, mode: Option<u32> },
    /// Open the path for writing and write (character device, FIFO).
    InPlace,
}

fn refuse(path: &Path, what: &str) -> Error {
    Error::invalid_argument(
        "output",
        format!("`{}` is {what}; give a file path", path.display()),
    )
}

fn plan(path: &Path) -> Result<Plan> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid_argument("output", "the path is empty"));
    }
    match fs::metadata(path) {
        Ok(meta) => {
            let ft = meta.file_type();
            if ft.is_file() {
                let is_link = fs::symlink_metadata(path)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                let target = if is_link {
                    fs::canonicalize(path).map_err(|e| Error::io(path, e))?
                } else {
                    path.to_path_buf()
                };
                Ok(Plan::Replace {
                    target,
                    mode: Some(meta.mode() & 0o777),
                })
            } else if ft.is_char_device() || ft.is_fifo() {
                Ok(Plan::InPlace)
            } else if ft.is_dir() {
                Err(refuse(path, "a directory"))
            } else if ft.is_block_device() {
                Err(refuse(path, "a block device"))
            } else if ft.is_socket() {
                Err(refuse(path, "a socket"))
            } else {
                Err(refuse(path, "not a regular file"))
            }
        }
        // Nothing there, or a dangling link: create the link's final target.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Plan::Replace {
            target: follow_links(path).map_err(|e| Error::io(path, e))?,
            mode: None,
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` with the links *it* names followed until a non-link or a missing path.
fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p)?;
                p = if target.is_absolute() {
                    target
                } else {
                    parent_of(&p).join(target)
                };
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// The absolute path `path` names once links and `..` are resolved (its folder must exist).
fn resolve(path: &Path) -> Option<PathBuf> {
    let p = follow_links(path).ok()?;
    if let Ok(c) = fs::canonicalize(&p) {
        return Some(c);
    }
    let name = p.file_name()?;
    Some(fs::canonicalize(parent_of(&p)).ok()?.join(name))
}

fn same_file(output: &Path, input: &Path) -> bool {
    match (fs::metadata(output), fs::metadata(input)) {
        (Ok(a), Ok(b)) => {
            !a.file_type().is_char_device() && a.dev() == b.dev() && a.ino() == b.ino()
        }
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => false,
        (Err(_), Err(_)) => {
            matches!((resolve(output), resolve(input)), (Some(a), Some(b)) if a == b)
        }
    }
}

fn write_in_place(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |e| Error::io(path, e);
    let mut file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
    // The path could have been swapped for something else between the check and the open.
    let ft = file.metadata().map_err(io_err)?.file_type();
    if !(ft.is_char_device() || ft.is_fifo()) {
        return Err(refuse(path, "no longer a device or FIFO"));
    }
    file.write_all(bytes).map_err(io_err)?;
    file.flush().map_err(io_err)
}

/// Creates a fresh temporary file beside `target`.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    // Keep the name well under NAME_MAX (255 bytes) whatever the target's name.
    let mut short = name.to_string();
    if short.len() > 100 {
        let mut cut = 100;
        while !short.is_char_boundary(cut) {
            cut -= 1;
        }
        short.truncate(cut);
    }
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{short}.{}-{n}-{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique temporary file name")))
}

fn replace(user: &Path, target: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let name = match target.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => return Err(refuse(user, "not a file path")),
    };
    let dir = parent_of(target);
    let (tmp, mut file) = create_temp(&dir, &name).map_err(|e| Error::io(user, e))?;
    let written = (|| -> io::Result<()> {
        if let Some(mode) = mode {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(user, e));
    }
    // Make the rename itself durable (best effort: some file systems refuse).
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cbx-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn is_link(p: &Path) -> bool {
        fs::symlink_metadata(p).unwrap().file_type().is_symlink()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn new_and_regular_files() {
        let dir = scratch("regular");
        let p = dir.join("out.bin");
        write_output(&p, b"first", &[]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        write_output(&p, b"second", &[]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(names(&dir), ["out.bin"], "no temporary file is left");
        // A missing folder: one Io error naming the user's path, cause stated once.
        let missing = dir.join("missing/x.wav");
        let e = write_output(&missing, b"x", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        let msg = format!("{:#}", anyhow::Error::from(e));
        assert!(msg.contains("missing/x.wav"), "{msg}");
        assert!(!msg.contains(".tmp"), "{msg}");
        assert_eq!(msg.matches("No such file").count(), 1, "{msg}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn permissions_are_kept() {
        let dir = scratch("perms");
        let p = dir.join("out.wav");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        write_output(&p, b"new", &[]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_are_followed_and_kept() {
        let dir = scratch("symlink");
        fs::create_dir(dir.join("real")).unwrap();
        let target = dir.join("real/target.wav");
        fs::write(&target, b"old").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link.wav");
        symlink("real/target.wav", &link).unwrap();
        // A link to a link.
        let link2 = dir.join("link2.wav");
        symlink(&link, &link2).unwrap();
        write_output(&link2, b"new", &[]).unwrap();
        assert!(is_link(&link));
        assert!(is_link(&link2));
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        assert_eq!(names(&dir), ["link.wav", "link2.wav", "real"]);
        assert_eq!(names(&dir.join("real")), ["target.wav"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dangling_symlink_creates_its_target() {
        let dir = scratch("dangling");
        fs::create_dir(dir.join("sub")).unwrap();
        let link = dir.join("link.wav");
        symlink("sub/new.wav", &link).unwrap();
        write_output(&link, b"data", &[]).unwrap();
        assert!(is_link(&link));
        assert_eq!(fs::read(dir.join("sub/new.wav")).unwrap(), b"data");
        // A link loop is an Io error, not a hang.
        let a = dir.join("a");
        let b = dir.join("b");
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        assert_eq!(
            write_output(&a, b"x", &[]).unwrap_err().kind(),
            ErrorKind::Io
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn char_device_is_written_in_place() {
        let null = Path::new("/dev/null");
        let before = fs::symlink_metadata(null).unwrap();
        assert_eq!(plan(null).unwrap(), Plan::InPlace);
        write_output(null, b"discarded", &[]).unwrap();
        let after = fs::symlink_metadata(null).unwrap();
        assert!(after.file_type().is_char_device());
        assert_eq!((before.dev(), before.ino()), (after.dev(), after.ino()));
        // Character devices are exempt from the input check (`/dev/stdin` vs `/dev/stdout`).
        write_output(null, b"x", &[null]).unwrap();
    }

    #[test]
    fn fifo_is_written_in_place() {
        let dir = scratch("fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(&fifo).unwrap())
        };
        write_output(&fifo, b"through the pipe", &[]).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(names(&dir), ["pipe"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_are_refused() {
        let dir = scratch("dir");
        let e = write_output(&dir, b"x", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(e.to_string().contains(&*dir.to_string_lossy()), "{e}");
        assert!(write_output(Path::new(""), b"x", &[]).is_err());
        assert_eq!(names(&dir), Vec::<String>::new());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_input_is_never_overwritten() {
        let dir = scratch("same");
        let input = dir.join("in.wav");
        fs::write(&input, b"precious").unwrap();
        // The same path, a link to it, a path through `..`.
        let link = dir.join("link.wav");
        symlink(&input, &link).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        for out in [input.clone(), link, dir.join("sub/../in.wav")] {
            let e =
                write_output(&out, b"clobbered", &[Path::new("/dev/null"), &input]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&*out.to_string_lossy()), "{msg}");
            assert!(msg.contains(&*input.to_string_lossy()), "{msg}");
        }
        assert_eq!(fs::read(&input).unwrap(), b"precious");
        // Neither exists yet: the same resolved path.
        let a = dir.join("new.wav");
        let b = dir.join("sub/../new.wav");
        assert!(check_not_an_input(&a, &[&b]).is_err());
        assert!(!a.exists());
        // A different file is fine.
        write_output(&dir.join("other.wav"), b"ok", &[&input]).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_writers_all_succeed() {
        let dir = scratch("threads");
        let p = dir.join("voice.safetensors");
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        write_output(&p, &[i; 4096], &[]).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let bytes = fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == bytes[0]), "one writer's bytes");
        assert_eq!(names(&dir), ["voice.safetensors"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
