//! Checked conversions of C arguments: pointers, strings, paths and
//! versioned structs.

use std::ffi::{c_char, CStr};
use std::mem::size_of;
use std::path::PathBuf;

use super::status::{CbxStatus, FfiError, FfiResult};

/// Borrows `*ptr`, or fails naming the parameter when `ptr` is NULL.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` for the returned lifetime.
pub(crate) unsafe fn borrow<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller guarantees a non-NULL `ptr` points to a live `T`.
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::invalid_argument(format!("`{name}` is NULL")))
}

/// The body of a `cbx_*_default` function: writes `make(engine)` into the caller's
/// `slot` (`name` in the message when it is NULL).
///
/// # Safety
/// `engine` is NULL or a live engine; `slot` is NULL or points to writable
/// storage for a `T`.
pub(crate) unsafe fn write_default<T>(
    engine: *const super::engine::CbxEngine,
    slot: *mut T,
    name: &str,
    make: impl FnOnce(&crate::Engine) -> T,
) -> FfiResult<()> {
    // SAFETY: the caller's contract.
    let engine = unsafe { borrow(engine, "engine") }?;
    let slot = unsafe { slot.as_mut() }
        .ok_or_else(|| FfiError::invalid_argument(format!("`{name}` is NULL")))?;
    *slot = make(&engine.engine);
    Ok(())
}

/// Borrows an out-pointer and sets what it points to to NULL, so the caller
/// sees NULL on every failure.
///
/// # Safety
/// `out` is NULL or points to writable storage for a pointer.
pub(crate) unsafe fn out_ptr<'a, T>(out: *mut *mut T, name: &str) -> FfiResult<&'a mut *mut T> {
    // SAFETY: the caller guarantees a non-NULL `out` is writable.
    let slot = unsafe { out.as_mut() }
        .ok_or_else(|| FfiError::invalid_argument(format!("`{name}` is NULL")))?;
    *slot = std::ptr::null_mut();
    Ok(slot)
}

/// Reads a NUL-terminated string that must be UTF-8; text that is not is
/// reported with `invalid_status` (`CBX_INVALID_TEXT` for synthesis text,
/// `CBX_INVALID_ARGUMENT` for options).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string live for `'a`.
pub(crate) unsafe fn utf8<'a>(
    ptr: *const c_char,
    name: &str,
    invalid_status: CbxStatus,
) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::invalid_argument(format!("`{name}` is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let cstr = unsafe { CStr::from_ptr(ptr) };
    cstr.to_str().map_err(|err| {
        FfiError::new(
            invalid_status,
            format!(
                "`{name}` is not valid UTF-8 (invalid byte at offset {})",
                err.valid_up_to()
            ),
        )
    })
}

/// Reads a file-system path. On Unix any bytes are accepted (paths are
/// bytes there); elsewhere the path must be UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn path(ptr: *const c_char, name: &str) -> FfiResult<PathBuf> {
    if ptr.is_null() {
        return Err(FfiError::invalid_argument(format!("`{name}` is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let cstr = unsafe { CStr::from_ptr(ptr) };
    if cstr.is_empty() {
        return Err(FfiError::invalid_argument(format!(
            "`{name}` is an empty path"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(cstr.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        cstr.to_str()
            .map(PathBuf::from)
            .map_err(|_| FfiError::invalid_argument(format!("`{name}` is not valid UTF-8")))
    }
}

/// A `#[repr(C)]` struct whose first field is `uint32_t struct_size`, so
/// that fields can be appended without breaking callers built against an
/// older header.
pub(crate) trait Versioned: Copy {
    /// The size of the first published version of the struct: the smallest
    /// `struct_size` accepted.
    const MIN_SIZE: usize;
    /// The name used in messages.
    const NAME: &'static str;
}

/// Reads a versioned struct from the caller: the first `struct_size` bytes
/// come from `ptr`, the fields after them (appended by a newer library than
/// the caller was built against) keep the values in `defaults`. A larger
/// `struct_size` (a caller built against a newer header) is accepted and the
/// fields this library does not know are ignored.
///
/// # Safety
/// `ptr` is NULL or points to at least `struct_size` readable bytes, where
/// `struct_size` is the struct's first field.
pub(crate) unsafe fn read_versioned<T: Versioned>(
    ptr: *const T,
    defaults: T,
    name: &str,
) -> FfiResult<T> {
    if ptr.is_null() {
        return Err(FfiError::invalid_argument(format!("`{name}` is NULL")));
    }
    // SAFETY: non-NULL; the caller's contract.
    let known = unsafe {
        known_size::<T>(
            ptr,
            name,
            " (initialise it with its _default function first)",
        )
    }?;
    let mut value = defaults;
    // SAFETY: `known` bytes are readable from `ptr` (the caller declared at
    // least that many) and writable in `value`; every field of a versioned
    // struct is plain data (integers, floats, pointers) valid for any bytes,
    // and `known` only ends at a field boundary (a published struct size).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), known);
    }
    Ok(value)
}

/// The bytes of a versioned struct at non-NULL `ptr` this library reads or writes:
/// `min(struct_size, sizeof(T))`; a `struct_size` under [`Versioned::MIN_SIZE`] fails
/// naming `name->struct_size` (`zero_hint` is added when it is 0).
///
/// # Safety
/// `ptr` is non-NULL and points to at least 4 readable bytes.
unsafe fn known_size<T: Versioned>(ptr: *const T, name: &str, zero_hint: &str) -> FfiResult<usize> {
    // SAFETY: every versioned struct begins with a `uint32_t struct_size`.
    let declared = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    if declared < T::MIN_SIZE {
        let hint = if declared == 0 { zero_hint } else { "" };
        return Err(FfiError::invalid_argument(format!(
            "`{name}->struct_size` is {declared}, smaller than any {} this library knows ({} bytes){hint}",
            T::NAME,
            T::MIN_SIZE
        )));
    }
    Ok(declared.min(size_of::<T>()))
}

/// Checks a versioned struct the library fills for the caller (the caller sets its
/// `struct_size`, e.g. to `sizeof`): `None` for NULL (nothing to fill), else the bytes
/// this library will write, `min(struct_size, sizeof(T))`. Those bytes after
/// `struct_size` are zeroed now, so a failed call leaves zeros; fields past them (a
/// caller built against a newer header) are left alone. Fill it with
/// [`write_versioned`].
///
/// # Safety
/// `ptr` is NULL or points to at least `struct_size` writable bytes, where
/// `struct_size` is the struct's first field; every field of `T` is valid as zero bytes.
pub(crate) unsafe fn versioned_out<T: Versioned>(
    ptr: *mut T,
    name: &str,
) -> FfiResult<Option<usize>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL; the caller's contract.
    let known = unsafe { known_size::<T>(ptr, name, " (set it to sizeof the struct)") }?;
    // SAFETY: `known` bytes are writable (the caller declared at least that many), and
    // zero bytes are a valid value of every field.
    unsafe {
        std::ptr::write_bytes(
            ptr.cast::<u8>().add(STRUCT_SIZE_BYTES),
            0,
            known.saturating_sub(STRUCT_SIZE_BYTES),
        );
    }
    Ok(Some(known))
}

/// Writes the fields of `value` after `struct_size` into the caller's struct, up to
/// `known` bytes (from [`versioned_out`]); `struct_size` keeps the caller's value.
///
/// # Safety
/// `ptr` passed [`versioned_out`], which returned `Some(known)`.
pub(crate) unsafe fn write_versioned<T: Versioned>(ptr: *mut T, value: &T, known: usize) {
    let known = known.min(size_of::<T>());
    // SAFETY: `known` bytes are readable from `value` and writable at `ptr`, past the
    // 4-byte `struct_size`; `known` ends at a field boundary (a published struct size).
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T).cast::<u8>().add(STRUCT_SIZE_BYTES),
            ptr.cast::<u8>().add(STRUCT_SIZE_BYTES),
            known.saturating_sub(STRUCT_SIZE_BYTES),
        );
    }
}

/// The leading `uint32_t struct_size` of every versioned struct.
const STRUCT_SIZE_BYTES: usize = size_of::<u32>();

/// Moves a value to the heap and hands its ownership to C.
pub(crate) fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes ownership back from C and drops the value; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or came from [`into_raw`] and was not freed before.
pub(crate) unsafe fn drop_raw<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: the caller guarantees `ptr` came from `into_raw` and is
        // freed once.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Sample {
        struct_size: u32,
        a: u32,
        b: u64,
    }

    impl Versioned for Sample {
        const MIN_SIZE: usize = 16;
        const NAME: &'static str = "Sample";
    }

    const DEFAULTS: Sample = Sample {
        struct_size: 16,
        a: 1,
        b: 2,
    };

    #[test]
    fn versioned_structs_are_read_by_their_declared_size() {
        let given = Sample {
            struct_size: 16,
            a: 10,
            b: 20,
        };
        // SAFETY: a live struct of its declared size.
        assert_eq!(
            unsafe { read_versioned(&given, DEFAULTS, "s") }.ok(),
            Some(given)
        );
        // A newer caller's larger struct: the known prefix is read.
        #[repr(C)]
        struct Newer {
            old: Sample,
            extra: u64,
        }
        let newer = Newer {
            old: Sample {
                struct_size: 24,
                a: 5,
                b: 6,
            },
            extra: 9,
        };
        // SAFETY: `newer` holds the 24 bytes it declares.
        let read = unsafe { read_versioned(&newer.old as *const Sample, DEFAULTS, "s") };
        assert_eq!(read.ok().map(|s| (s.a, s.b)), Some((5, 6)));
        assert_eq!(newer.extra, 9);
    }

    #[test]
    fn too_small_or_null_structs_are_invalid_arguments() {
        let zero = Sample {
            struct_size: 0,
            a: 0,
            b: 0,
        };
        // SAFETY: live struct; NULL is checked.
        let err = unsafe { read_versioned(&zero, DEFAULTS, "options") }.err();
        assert!(err.is_some_and(
            |e| e.status == CbxStatus::CBX_INVALID_ARGUMENT && e.message.contains("_default")
        ));
        // SAFETY: NULL is checked.
        let err = unsafe { read_versioned(std::ptr::null::<Sample>(), DEFAULTS, "options") }.err();
        assert!(err.is_some_and(|e| e.message.contains("`options` is NULL")));
    }

    #[test]
    fn versioned_out_structs_are_zeroed_then_filled_up_to_their_size() {
        let filled = Sample {
            struct_size: 0,
            a: 7,
            b: 8,
        };
        // NULL: nothing to fill.
        // SAFETY: NULL is checked.
        let none = unsafe { versioned_out(std::ptr::null_mut::<Sample>(), "stats") };
        assert!(matches!(none, Ok(None)));
        // The caller's size: zeroed, then filled; struct_size kept.
        let mut out = Sample {
            struct_size: 16,
            a: 1,
            b: 2,
        };
        // SAFETY: a live struct of its declared size.
        let known = unsafe { versioned_out(&mut out, "stats") }.ok().flatten();
        assert_eq!(known, Some(16));
        assert_eq!((out.struct_size, out.a, out.b), (16, 0, 0));
        // SAFETY: as above.
        unsafe { write_versioned(&mut out, &filled, 16) };
        assert_eq!((out.struct_size, out.a, out.b), (16, 7, 8));
        // A newer caller's larger struct: its extra field is left alone.
        #[repr(C)]
        struct Newer {
            old: Sample,
            extra: u64,
        }
        let mut newer = Newer {
            old: Sample {
                struct_size: 24,
                a: 1,
                b: 2,
            },
            extra: 9,
        };
        let ptr = &mut newer.old as *mut Sample;
        // SAFETY: `newer` holds the 24 bytes it declares.
        let known = unsafe { versioned_out(ptr, "stats") }.ok().flatten();
        assert_eq!(known, Some(16));
        // SAFETY: as above.
        unsafe { write_versioned(ptr, &filled, 16) };
        assert_eq!((newer.old.a, newer.old.b, newer.extra), (7, 8, 9));
        // Too small: refused, untouched.
        let mut small = Sample {
            struct_size: 8,
            a: 1,
            b: 2,
        };
        // SAFETY: a live struct.
        let err = unsafe { versioned_out(&mut small, "stats") }.err();
        assert!(
            err.is_some_and(|e| e.status == CbxStatus::CBX_INVALID_ARGUMENT
                && e.message.contains("`stats->struct_size` is 8"))
        );
        assert_eq!((small.a, small.b), (1, 2));
    }

    #[test]
    fn strings_must_be_utf8() {
        let bad = c"caf\xc3\x28";
        // SAFETY: NUL-terminated literals.
        let err = unsafe { utf8(bad.as_ptr(), "text", CbxStatus::CBX_INVALID_TEXT) }.err();
        assert!(err.is_some_and(
            |e| e.status == CbxStatus::CBX_INVALID_TEXT && e.message.contains("offset 3")
        ));
        // SAFETY: as above.
        assert_eq!(
            unsafe { utf8(c"ok".as_ptr(), "text", CbxStatus::CBX_INVALID_TEXT) }.ok(),
            Some("ok")
        );
        // SAFETY: as above.
        assert!(unsafe { path(c"".as_ptr(), "path") }.is_err());
    }
}
