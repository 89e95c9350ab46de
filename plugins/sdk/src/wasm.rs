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
