//! The nftables library (`libnftables.so.1`, what the `nft` program is a front end of),
//! loaded at run time and driven in this process.
//!
//! Why: starting `nft` costs more than the transaction it runs (on the CI machine ~20 ms
//! for a one-rule table: process start, loading its libraries, reading the ruleset cache,
//! against a fraction of a millisecond in the kernel), and every rule change pays it. The
//! library takes the same text and prints the same listings and errors, so scripts, their
//! snapshot tests and what operators read stay as they are. It is opened with `dlopen`
//! rather than linked so that a host without it (or with another soname) still works,
//! through the program.
//!
//! A context's netlink socket belongs to the network namespace of the thread that made it,
//! so each thread keeps its own context (thread-local): the namespace runner threads of
//! `NftCli::in_netns` each have one in their namespace. Kept rather than made per command:
//! closing a socket after a transaction that deleted something waits for the kernel to
//! free it (measured here: a transaction replacing a one-rule table 0.4 ms on a kept
//! context, 13 ms on a context made and freed for it, 19 ms through the program), which
//! every revocation and leave would pay. The price is the context's cache of the ruleset,
//! ~35 MiB for the agent bench's 1,000-instance table.
//!
//! Its two `unsafe` blocks (loading the symbols, calling them) are the FFI boundary; each
//! says why it is sound.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::backend::NftError;

/// `struct nft_ctx *`.
type Ctx = *mut c_void;

/// The library's entry points this module uses (all of libnftables' stable API since 0.9).
struct Library {
    _lib: libloading::Library,
    ctx_new: unsafe extern "C" fn(u32) -> Ctx,
    buffer_output: unsafe extern "C" fn(Ctx) -> c_int,
    buffer_error: unsafe extern "C" fn(Ctx) -> c_int,
    output: unsafe extern "C" fn(Ctx) -> *const c_char,
    error: unsafe extern "C" fn(Ctx) -> *const c_char,
    dry_run: unsafe extern "C" fn(Ctx, bool),
    run: unsafe extern "C" fn(Ctx, *const c_char) -> c_int,
}

fn library() -> Option<&'static Library> {
    static LIBRARY: OnceLock<Option<Library>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            // SAFETY: loading libnftables runs no initialiser with requirements of ours, and
            // each symbol is given the C signature libnftables.h declares for it.
            #[allow(unsafe_code)]
            unsafe {
                let lib = libloading::Library::new("libnftables.so.1").ok()?;
                macro_rules! sym {
                    ($name:literal) => {
                        *lib.get($name).ok()?
                    };
                }
                Some(Library {
                    ctx_new: sym!(b"nft_ctx_new\0"),
                    buffer_output: sym!(b"nft_ctx_buffer_output\0"),
                    buffer_error: sym!(b"nft_ctx_buffer_error\0"),
                    output: sym!(b"nft_ctx_get_output_buffer\0"),
                    error: sym!(b"nft_ctx_get_error_buffer\0"),
                    dry_run: sym!(b"nft_ctx_set_dry_run\0"),
                    run: sym!(b"nft_run_cmd_from_buffer\0"),
                    _lib: lib,
                })
            }
        })
        .as_ref()
}

thread_local! {
    /// This thread's context (made in its network namespace), once made. Never freed: a
    /// thread that programs nftables does so for its whole life.
    static CONTEXT: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// Whether the library can be used here.
pub(crate) fn available() -> bool {
    library().is_some()
}

/// Runs `commands` (an `nft -f` script, or one command such as `list table inet x`) as one
/// transaction in the calling thread's network namespace, checking only with `dry_run`;
/// returns what `nft` would print. `None` when the library is not there.
pub(crate) fn run(commands: &str, dry_run: bool) -> Option<Result<String, NftError>> {
    let lib = library()?;
    let text = match CString::new(commands) {
        Ok(text) => text,
        Err(_) => return Some(Err(NftError::Rejected("a script with a NUL byte".into()))),
    };
    CONTEXT.with(|cell| {
        let mut cell = cell.borrow_mut();
        // SAFETY: every call gets a context made by `nft_ctx_new` on this thread and used on
        // it alone; the buffers returned are copied before the next call on the context.
        #[allow(unsafe_code)]
        unsafe {
            let ctx = match *cell {
                Some(ctx) => ctx,
                None => {
                    let ctx = (lib.ctx_new)(0);
                    if ctx.is_null() {
                        return Some(Err(NftError::Spawn("nft_ctx_new failed".into())));
                    }
                    (lib.buffer_output)(ctx);
                    (lib.buffer_error)(ctx);
                    *cell = Some(ctx);
                    ctx
                }
            };
            let read = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            // Whatever an earlier command left in the buffers is not this one's.
            read((lib.output)(ctx));
            read((lib.error)(ctx));
            (lib.dry_run)(ctx, dry_run);
            let status = (lib.run)(ctx, text.as_ptr());
            (lib.dry_run)(ctx, false);
            let (out, err) = (read((lib.output)(ctx)), read((lib.error)(ctx)));
            Some(if status == 0 {
                Ok(out)
            } else {
                Err(NftError::Rejected(err.trim().to_string()))
            })
        }
    })
}
