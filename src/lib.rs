//! provisiond: a self-hosted Provisioning API server. Billing events come in over
//! `/api/v1`; administrators choose in the browser which handlers receive them.

pub(crate) mod api;
pub mod app;
pub(crate) mod catalogue;
pub mod config;
pub mod db;
pub mod diagnostics;
pub(crate) mod dispatcher;
pub mod domain;
pub(crate) mod error;
pub(crate) mod maintenance;
pub(crate) mod security;
pub(crate) mod service;
pub(crate) mod web;

/// mimalloc for every binary of the crate: under load the server allocates a
/// little for each request, attempt and row, from many threads; glibc's
/// allocator spent a large share of the server's CPU on it (the profile:
/// docs/performance-history.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tunes mimalloc before the first allocation (a constructor: it runs before
/// Rust's runtime allocates anything): memory no longer used goes back to the
/// OS at once instead of a second later, and arena memory is committed as it
/// is used. Peak memory under load then stays near what the server holds.
#[cfg(target_os = "linux")]
#[used]
#[allow(unsafe_code)] // audited: a constructor that only sets two allocator options
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn tune() {
        // mimalloc's option numbers (mimalloc.h, `mi_option_e`); the assertion
        // fails the build if an upgrade renumbers them.
        const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        const _: () = assert!(libmimalloc_sys::_mi_option_last == 47, "mimalloc's options were renumbered");
        // SAFETY: plain option setters, run once before any other code of the process.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }
    tune
};
