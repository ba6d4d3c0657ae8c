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
//! [`OutputWriter`] writes the same way piece by piece (audio as it is produced): the
//! temporary file is renamed over the target only by its `commit`, and removed when the
//! writer is dropped without one.
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
    let mut out = OutputWriter::create(path, inputs)?;
    out.write_all(bytes).map_err(|e| Error::io(path, e))?;
    out.commit()
}

/// An output written piece by piece (audio as it is synthesized), with the guarantees of
/// [`write_output`]: a regular file (or a link's target) is written to a temporary file
/// beside it and only [`OutputWriter::commit`] renames it over the target; dropping the
/// writer without committing (an error, a cancel) removes the temporary file, so the target
/// is the old file or the complete new one, never part of one. A character device or FIFO
/// is written in place as the pieces come (what was written stays written).
///
/// Write through [`std::io::Write`]; its errors are plain `io::Error`s (wrap them with
/// [`OutputWriter::path`]). `commit` flushes, syncs and renames.
#[derive(Debug)]
pub struct OutputWriter {
    /// The caller's path (errors name it, never the temporary file).
    path: PathBuf,
    file: File,
    /// Where a regular file's bytes go until the commit; `None` when written in place.
    temp: Option<Temp>,
    committed: bool,
}

#[derive(Debug)]
struct Temp {
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
}

impl OutputWriter {
    /// Opens `path` for writing (see the type's docs), refusing when it is one of `inputs`.
    /// Opening a FIFO waits for a reader.
    ///
    /// Errors: as [`write_output`].
    pub fn create(path: &Path, inputs: &[&Path]) -> Result<OutputWriter> {
        check_not_an_input(path, inputs)?;
        match plan(path)? {
            Plan::InPlace => {
                let io_err = |e| Error::io(path, e);
                let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
                // The path could have been swapped for something else between the check and
                // the open.
                let ft = file.metadata().map_err(io_err)?.file_type();
                if !(ft.is_char_device() || ft.is_fifo()) {
                    return Err(refuse(path, "no longer a device or FIFO"));
                }
                Ok(OutputWriter {
                    path: path.to_path_buf(),
                    file,
                    temp: None,
                    committed: false,
                })
            }
            Plan::Replace { target, mode } => {
                let name = match target.file_name() {
                    Some(n) => n.to_string_lossy().into_owned(),
                    None => return Err(refuse(path, "not a file path")),
                };
                let dir = parent_of(&target);
                let (tmp, file) = create_temp(&dir, &name).map_err(|e| Error::io(path, e))?;
                let out = OutputWriter {
                    path: path.to_path_buf(),
                    file,
                    temp: Some(Temp { tmp, target, dir }),
                    committed: false,
                };
                if let Some(mode) = mode {
                    // On failure `out` is dropped, which removes the temporary file.
                    out.file
                        .set_permissions(Permissions::from_mode(mode))
                        .map_err(|e| Error::io(path, e))?;
                }
                Ok(out)
            }
        }
    }

    /// The path the caller gave.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the bytes go to a (temporary) regular file, which
    /// [`OutputWriter::write_at`] can rewrite; `false` for a device or FIFO.
    pub fn is_file(&self) -> bool {
        self.temp.is_some()
    }

    /// Overwrites bytes already written at `offset` (a header whose sizes are known only at
    /// the end). Only for a regular file ([`OutputWriter::is_file`]); `InvalidArgument`
    /// otherwise, `Io` (naming the caller's path) when writing fails.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if self.temp.is_none() {
            return Err(Error::invalid_argument(
                "output",
                format!(
                    "`{}` is a device or FIFO: written bytes cannot be rewritten",
                    self.path.display()
                ),
            ));
        }
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Finishes the output: flushes, and for a regular file syncs the temporary file and
    /// renames it over the target (then syncs the folder, best effort). On error the
    /// temporary file is removed and the target is left as it was.
    pub fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        let io_err = |e| Error::io(&path, e);
        self.file.flush().map_err(io_err)?;
        let Some(temp) = &self.temp else {
            self.committed = true;
            return Ok(());
        };
        self.file.sync_all().map_err(io_err)?;
        fs::rename(&temp.tmp, &temp.target).map_err(io_err)?;
        self.committed = true;
        // Make the rename itself durable (best effort: some file systems refuse).
        if let Ok(d) = File::open(&temp.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Write for OutputWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        if let (Some(temp), false) = (&self.temp, self.committed) {
            let _ = fs::remove_file(&temp.tmp);
        }
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
    fn a_writer_replaces_only_on_commit() {
        let dir = scratch("writer");
        let p = dir.join("out.wav");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        // Dropped without a commit (an error, a cancel): the old file stays, no temporary
        // file is left.
        {
            let mut w = OutputWriter::create(&p, &[]).unwrap();
            assert!(w.is_file());
            w.write_all(b"partial").unwrap();
            w.flush().unwrap();
            assert_eq!(names(&dir).len(), 2, "the temporary file beside the target");
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(&dir), ["out.wav"]);
        // Written in pieces, a header rewritten at the end, committed.
        let mut w = OutputWriter::create(&p, &[]).unwrap();
        assert_eq!(w.path(), p.as_path());
        w.write_all(b"????").unwrap();
        w.write_all(b"-body").unwrap();
        assert_eq!(
            fs::read(&p).unwrap(),
            b"old",
            "nothing visible before the commit"
        );
        w.write_at(0, b"HEAD").unwrap();
        w.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"HEAD-body");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(names(&dir), ["out.wav"]);
        // A new file that is never committed leaves nothing.
        let q = dir.join("new.wav");
        drop(OutputWriter::create(&q, &[]).unwrap());
        assert_eq!(names(&dir), ["out.wav"]);
        // Inputs and folders are refused before anything is created.
        assert!(OutputWriter::create(&p, &[&p]).is_err());
        assert!(OutputWriter::create(&dir, &[]).is_err());
        assert_eq!(names(&dir), ["out.wav"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_writer_streams_into_a_fifo() {
        let dir = scratch("writer-fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut f = File::open(&fifo).unwrap();
                // The first piece arrives before the writer is finished.
                let mut first = [0u8; 5];
                f.read_exact(&mut first).unwrap();
                tx.send(first.to_vec()).unwrap();
                let mut rest = Vec::new();
                f.read_to_end(&mut rest).unwrap();
                rest
            })
        };
        let mut w = OutputWriter::create(&fifo, &[]).unwrap();
        assert!(!w.is_file());
        w.write_all(b"first").unwrap();
        w.flush().unwrap();
        assert_eq!(rx.recv().unwrap(), b"first");
        assert_eq!(
            w.write_at(0, b"x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        w.write_all(b" second").unwrap();
        w.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b" second");
        assert_eq!(names(&dir), ["pipe"]);
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
