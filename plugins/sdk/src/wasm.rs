//! The wasm side: the WIT bindings, the glue `export_policy!` expands to, and (feature `runtime`)
//! what a no_std component needs from its language runtime.

pub use alloc::string::String;
use core::cell::RefCell;

use crate::types::{Assurance, Direction, Header, Kind, Verdict};
use crate::{Policy, Request};

/// The bindings wit-bindgen generates from the contract (world `warden:policy/plugin`).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export",
    });
}

/// The generated interfaces, by their WIT names.
pub(crate) mod wit {
    pub(crate) use super::bindings::warden::policy::{host, types};
}

pub use bindings::Guest;
pub type WitHeader = bindings::Header;
pub type WitRequest = bindings::Request;
pub type WitVerdict = bindings::Verdict;

/// Holds the plugin's state between calls. A component instance is single-threaded and the
/// component model forbids re-entering it, so the `RefCell` is never contended; it only turns a
/// broken invariant into a deny instead of undefined behaviour.
pub struct Slot<P>(RefCell<Option<P>>);

// SAFETY: wasm32-wasip2 components run on one thread (there is no threads proposal in this build;
// the `atomics` target feature is what would enable it, and then this impl disappears).
#[cfg(not(target_feature = "atomics"))]
unsafe impl<P> Sync for Slot<P> {}

impl<P: Policy> Slot<P> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// The `init` export: builds the policy from its JSON config.
    pub fn init(&self, config: String) -> Result<(), String> {
        let policy = P::init(&config)?;
        match self.0.try_borrow_mut() {
            Ok(mut slot) => {
                *slot = Some(policy);
                Ok(())
            }
            Err(_) => Err("init called during a decision".into()),
        }
    }

    /// The `decide` export.
    #[inline]
    pub fn decide(&self, header: WitHeader, request: &WitRequest) -> WitVerdict {
        let header = header_from_wit(header);
        let request = Request::from_wit(request);
        let verdict = match self.0.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(policy) => policy.decide(&header, request),
                None => Verdict::Deny("plugin is not initialised".into()),
            },
            Err(_) => Verdict::Deny("plugin re-entered".into()),
        };
        verdict_to_wit(verdict)
    }
}

#[inline]
fn header_from_wit(h: WitHeader) -> Header {
    use wit::types::{Assurance as A, Direction as D, Kind as K};
    Header {
        direction: match h.direction {
            D::Uplink => Direction::Uplink,
            D::Downlink => Direction::Downlink,
        },
        kind: match h.kind {
            K::Telemetry => Kind::Telemetry,
            K::Event => Kind::Event,
            K::Command => Kind::Command,
            K::CommandResult => Kind::CommandResult,
            K::Announce => Kind::Announce,
        },
        assurance: match h.assurance {
            A::None => Assurance::None,
            A::Channel => Assurance::Channel,
            A::SharedKey => Assurance::SharedKey,
            A::Certificate => Assurance::Certificate,
        },
        fresh: h.fresh,
        point_count: h.point_count,
        time_ms: h.time_ms,
    }
}

#[inline]
fn verdict_to_wit(v: Verdict) -> WitVerdict {
    match v {
        Verdict::Allow => WitVerdict::Allow,
        Verdict::Deny(r) => WitVerdict::Deny(r),
        Verdict::Quarantine(r) => WitVerdict::Quarantine(r),
    }
}

/// The language runtime of a no_std component: allocator, panic handler and `cabi_realloc`.
#[cfg(feature = "runtime")]
mod runtime {
    #[global_allocator]
    static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    /// A panic aborts the instance (a trap): the host sees a failed call, discards the instance and
    /// applies its failure policy. There is no unwinding in a plugin.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }

    /// The canonical ABI's allocator, through which the host passes strings and lists into the
    /// guest. wit-bindgen leaves it to the C library on wasm32-wasip2; a no_std guest has none.
    ///
    /// # Safety
    /// Called by the host per the canonical ABI: `old` is null with `old_len` 0, or a block this
    /// function returned with that length and `align`.
    #[cfg(target_env = "p2")]
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_realloc(
        old: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        use alloc::alloc::{Layout, alloc, realloc};
        if new_len == 0 {
            // A zero-sized allocation: any aligned non-null pointer will do.
            return align as *mut u8;
        }
        // SAFETY: the canonical ABI only passes power-of-two alignments and sizes that fit.
        let p = unsafe {
            if old_len == 0 {
                alloc(Layout::from_size_align_unchecked(new_len, align))
            } else {
                realloc(
                    old,
                    Layout::from_size_align_unchecked(old_len, align),
                    new_len,
                )
            }
        };
        if p.is_null() {
            core::arch::wasm32::unreachable()
        }
        p
    }
}
