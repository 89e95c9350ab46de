//! The least-privilege rule of `plugins/examples/least-privilege` (same config, same verdicts,
//! same reasons), written against the record contract `warden:policy-record` that Warden did not
//! choose: the whole request arrives as one record of strings and a list of points, so the rule
//! compares strings instead of interned symbols.
//!
//! The rule itself (`Rules`, `decide`) is plain Rust and has native tests; only the bindings and
//! the runtime glue are wasm-only.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    roles: BTreeMap<String, RoleConfig>,
    #[serde(default)]
    default_role: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RoleConfig {
    #[serde(default)]
    points: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
}

/// An allow list of names, or everything (`"*"`).
struct Allowed {
    any: bool,
    names: Vec<String>,
}

impl Allowed {
    fn new(names: Vec<String>) -> Self {
        Self {
            any: names.iter().any(|n| n == "*"),
            names,
        }
    }

    #[inline]
    fn permits(&self, name: &str) -> bool {
        self.any || self.names.iter().any(|n| n == name)
    }
}

struct Rules {
    points: Allowed,
    commands: Allowed,
}

impl Rules {
    fn new(r: RoleConfig) -> Self {
        Self {
            points: Allowed::new(r.points),
            commands: Allowed::new(r.commands),
        }
    }
}

pub struct Policy {
    roles: BTreeMap<String, Rules>,
    default: Option<(Rules, String)>,
}

/// The parts of a request the rule reads.
pub struct View<'a, P> {
    pub uplink: bool,
    pub role: Option<&'a str>,
    pub name: &'a str,
    pub points: P,
}

impl Policy {
    pub fn init(config: &str) -> Result<Self, String> {
        let c: Config = serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        let default = match c.default_role {
            Some(name) => match c.roles.get(&name) {
                Some(r) => Some((Rules::new(r.clone()), name)),
                None => {
                    return Err(format!(
                        "default_role `{name}` is not one of the configured roles"
                    ));
                }
            },
            None => None,
        };
        let roles = c
            .roles
            .into_iter()
            .map(|(name, r)| (name, Rules::new(r)))
            .collect();
        Ok(Self { roles, default })
    }

    /// `Ok(())` to allow, `Err(reason)` to deny.
    pub fn decide<'a, P: Iterator<Item = &'a str>>(&self, v: View<'a, P>) -> Result<(), String> {
        let (rules, role) = match v.role {
            Some(role) => match self.roles.get(role) {
                Some(rules) => (rules, role),
                None => return Err(format!("role `{role}` is not configured")),
            },
            None => match &self.default {
                Some((rules, name)) => (rules, name.as_str()),
                None => return Err("device has no role and no default_role is configured".into()),
            },
        };
        if v.uplink {
            for point in v.points {
                if !rules.points.permits(point) {
                    return Err(format!("role `{role}` may not send point `{point}`"));
                }
            }
            Ok(())
        } else if rules.commands.permits(v.name) {
            Ok(())
        } else {
            Err(format!(
                "role `{role}` may not receive command `{}`",
                v.name
            ))
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use core::cell::RefCell;

    use super::{Policy, View};
    use alloc::string::String;

    #[global_allocator]
    static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        core::arch::wasm32::unreachable()
    }

    wit_bindgen::generate!({ path: "../wit-record", world: "plugin-record" });

    use warden::policy_record::types::Direction;

    struct Slot(RefCell<Option<Policy>>);
    // SAFETY: a wasm32-wasip2 component instance runs on one thread (no `atomics` feature here).
    unsafe impl Sync for Slot {}
    static POLICY: Slot = Slot(RefCell::new(None));

    struct Component;

    impl Guest for Component {
        fn init(config: String) -> Result<(), String> {
            let p = Policy::init(&config)?;
            *POLICY
                .0
                .try_borrow_mut()
                .map_err(|_| String::from("busy"))? = Some(p);
            Ok(())
        }

        fn decide(request: Request) -> Verdict {
            let Ok(slot) = POLICY.0.try_borrow() else {
                return Verdict::Deny("re-entered".into());
            };
            let Some(policy) = slot.as_ref() else {
                return Verdict::Deny("not initialised".into());
            };
            let view = View {
                uplink: matches!(request.direction, Direction::Uplink),
                role: request.device.role.as_deref(),
                name: &request.name,
                points: request.points.iter().map(|p| p.name.as_str()),
            };
            match policy.decide(view) {
                Ok(()) => Verdict::Allow,
                Err(reason) => Verdict::Deny(reason),
            }
        }
    }

    export!(Component);

    /// wit-bindgen's lowering allocates guest memory through `cabi_realloc`; on wasm32-wasip2
    /// it expects libc to provide it, and a no_std build has none.
    ///
    /// # Safety
    /// Called by the canonical ABI only, with a previous allocation of `old_len` bytes at `old`
    /// (or `old_len == 0`) and a power-of-two `align`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_realloc(
        old: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        use alloc::alloc::{Layout, alloc, realloc};
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: the canonical ABI passes a valid power-of-two alignment and sizes.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn up<'a>(
        role: Option<&'a str>,
        points: &'a [&'a str],
    ) -> View<'a, impl Iterator<Item = &'a str>> {
        View {
            uplink: true,
            role,
            name: "",
            points: points.iter().copied(),
        }
    }

    fn down<'a>(role: Option<&'a str>, name: &'a str) -> View<'a, core::iter::Empty<&'a str>> {
        View {
            uplink: false,
            role,
            name,
            points: core::iter::empty(),
        }
    }

    const CONFIG: &str = r#"{"roles":{"sensor":{"points":["temperature","humidity"]},
        "actuator":{"points":["state"],"commands":["set_on"]},"gw":{"points":["*"],"commands":["*"]}}}"#;

    #[test]
    fn same_rule_and_reasons_as_the_plugin() {
        let p = Policy::init(CONFIG).unwrap();
        assert_eq!(
            p.decide(up(Some("sensor"), &["temperature", "humidity"])),
            Ok(())
        );
        assert_eq!(
            p.decide(up(Some("sensor"), &["temperature", "debug_shell"])),
            Err("role `sensor` may not send point `debug_shell`".into())
        );
        assert_eq!(p.decide(up(Some("sensor"), &[])), Ok(()));
        assert_eq!(p.decide(down(Some("actuator"), "set_on")), Ok(()));
        assert_eq!(
            p.decide(down(Some("sensor"), "set_on")),
            Err("role `sensor` may not receive command `set_on`".into())
        );
        assert_eq!(p.decide(down(Some("gw"), "anything")), Ok(()));
        assert_eq!(
            p.decide(up(Some("camera"), &["state"])),
            Err("role `camera` is not configured".into())
        );
        assert_eq!(
            p.decide(up(None, &["state"])),
            Err("device has no role and no default_role is configured".into())
        );
    }

    #[test]
    fn default_role_and_bad_configs() {
        let p = Policy::init(r#"{"roles":{"sensor":{"points":["t"]}},"default_role":"sensor"}"#)
            .unwrap();
        assert_eq!(p.decide(up(None, &["t"])), Ok(()));
        assert_eq!(p.decide(up(Some("sensor"), &["t"])), Ok(()));
        assert_eq!(
            p.decide(up(None, &["rssi"])),
            Err("role `sensor` may not send point `rssi`".into())
        );
        assert!(Policy::init(r#"{"roles":{},"default_role":"x"}"#).is_err());
        assert!(Policy::init(r#"{"roles":{"a":{"point":[]}}}"#).is_err());
        assert!(Policy::init("{}").is_err());
    }
}
