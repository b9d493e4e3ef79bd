//! memwarden's C ABI. Every function is `mw_<object>_<verb>`, returns `mw_status`
//! when it can fail, writes results through out-pointers, and never lets a panic
//! cross the boundary. The header `include/memwarden.h` is generated from this crate.
#![allow(non_camel_case_types)]
// One contract for every pointer, stated once (README, "C API conventions") instead of on
// each function: a pointer argument is NULL or valid for the call, strings NUL-terminated.
#![allow(clippy::missing_safety_doc)]

mod alert;
mod boundary;
mod chunk;
mod container;
mod iter;
mod manager;
mod monitor;
mod pool;
mod request;
mod stream;
mod tracker;

use std::ffi::{CString, c_char};

pub use alert::*;
pub use boundary::mw_status;
pub use chunk::*;
pub use container::*;
pub use iter::*;
pub use manager::*;
pub use monitor::*;
pub use pool::*;
pub use request::*;
pub use stream::*;
pub use tracker::*;

use boundary::{boundary, boundary_void, need_out, out_string, str_arg, write_out};

/// Major version of the library these declarations belong to.
pub const MW_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const MW_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const MW_VERSION_PATCH: u32 = 0;

/// The message of the last failed `mw_` call on this thread, or `""` when the last call
/// succeeded. The string belongs to the library and stays valid until the next `mw_`
/// call on this thread; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn mw_last_error_message() -> *const c_char {
    boundary::last_error_ptr()
}

/// Frees a string the library returned through an out-pointer. NULL is a no-op. Must not
/// be called twice for the same string, nor on strings from anywhere else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_string_free(s: *mut c_char) {
    boundary_void(|| {
        if !s.is_null() {
            // Safety: `s` came from CString::into_raw in out_string, per the contract.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// The library's version, e.g. `"0.1.0"`. Static string; do not free.
#[unsafe(no_mangle)]
pub extern "C" fn mw_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Parses a size as PHP writes it (`"512M"`, `"1G"`, `"128K"`, bytes) into `*out_bytes`;
/// `"-1"` gives -1. Anything else returns `MW_STATUS_INVALID_ARGUMENT` naming the text.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_size_parse(text: *const c_char, out_bytes: *mut i64) -> mw_status {
    boundary(|| {
        need_out(out_bytes, "out_bytes")?;
        // Safety: NULL-checked inside; NUL-terminated per the contract.
        let t = unsafe { str_arg(text, "text") }?;
        let v = match memwarden_core::parse_size(t)? {
            memwarden_core::Size::Unlimited => -1,
            memwarden_core::Size::Bytes(b) => i64::try_from(b).map_err(|_| {
                memwarden_core::Error::invalid_argument(format!("invalid size '{t}': number too large"))
            })?,
        };
        // Safety: checked non-NULL above.
        unsafe { write_out(out_bytes, "out_bytes", v) }
    })
}

/// Formats bytes in the largest unit that divides them (`536870912` -> `"512M"`).
/// Free `*out` with `mw_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mw_size_format(bytes: u64, out: *mut *mut c_char) -> mw_status {
    boundary(|| {
        need_out(out, "out")?;
        // Safety: checked non-NULL above.
        unsafe { write_out(out, "out", out_string(memwarden_core::format_size(bytes))) }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_constants_match_the_crate() {
        assert_eq!(super::MW_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(super::MW_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(super::MW_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
    }
}
