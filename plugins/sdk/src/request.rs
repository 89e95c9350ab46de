//! The message being decided, read through accessors.
//!
//! On wasm every accessor is one call into the host and only what the plugin asks for crosses
//! the boundary: names come back as [`Symbol`]s (a `u32`), strings only from the `*_text`
//! accessors and the few string-valued fields. Natively (unit tests) a `Request` is a plain
//! in-memory struct built with [`crate::testing::RequestBuilder`] or read from JSONL, whose name
//! accessors answer from the mock host's symbol table exactly as the gateway would.

use alloc::string::String;

use crate::types::{Header, Observed, Status, Symbol, Value};

/// One message: the device, the command name (downlink), the points or arguments, who issued it.
/// Valid only during the `decide` call that received it.
#[cfg(warden_component)]
#[repr(transparent)]
pub struct Request(crate::wasm::wit::host::Request);

/// One message: the device, the command name (downlink), the points or arguments, who issued it.
/// Valid only during the `decide` call that received it (it reads the request area the host
/// wrote for that call).
#[cfg(warden_core_abi)]
pub struct Request {
    _only_one: (),
}

#[cfg(warden_core_abi)]
pub(crate) static REQUEST: Request = Request { _only_one: () };

/// One message: the device, the command name (downlink), the points or arguments, who issued it.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub(crate) device_id: String,
    pub(crate) protocol: String,
    pub(crate) zone: String,
    pub(crate) role: Option<String>,
    pub(crate) status: Status,
    pub(crate) manufacturer: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) firmware: Option<String>,
    pub(crate) name: String,
    pub(crate) principal: Option<String>,
    pub(crate) security: Option<String>,
    pub(crate) observed: Observed,
    pub(crate) anomaly_feature: Option<String>,
    pub(crate) points: alloc::vec::Vec<crate::testing::Point>,
}

/// The points (uplink) or command arguments (downlink) of a message, as `(index, name)`.
pub struct Points<'a> {
    request: &'a Request,
    next: u32,
    count: u32,
}

impl Iterator for Points<'_> {
    type Item = (u32, Symbol);

    #[inline]
    fn next(&mut self) -> Option<(u32, Symbol)> {
        if self.next >= self.count {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some((i, self.request.point_name(i)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.count - self.next) as usize;
        (n, Some(n))
    }
}

impl Request {
    /// Iterates over the message's point (uplink) or argument (downlink) names, one host call each.
    #[inline]
    pub fn points(&self, header: &Header) -> Points<'_> {
        Points {
            request: self,
            next: 0,
            count: header.point_count,
        }
    }
}

#[cfg(warden_core_abi)]
impl Request {
    /// The device's id, `protocol:address`.
    pub fn device_id(&self) -> String {
        crate::core_abi::request_text(field::DEVICE_ID, 0).unwrap_or_default()
    }
    #[inline]
    pub fn protocol(&self) -> Symbol {
        crate::core_abi::sym(off::PROTOCOL)
    }
    #[inline]
    pub fn zone(&self) -> Symbol {
        crate::core_abi::sym(off::ZONE)
    }
    /// `None` when the device has no role; `Some(Symbol::OTHER)` for a role the plugin never
    /// interned.
    #[inline]
    pub fn role(&self) -> Option<Symbol> {
        crate::core_abi::has(off::HAS_ROLE).then(|| crate::core_abi::sym(off::ROLE))
    }
    #[inline]
    pub fn status(&self) -> Status {
        crate::core_abi::status()
    }
    pub fn manufacturer(&self) -> Option<String> {
        crate::core_abi::request_text(field::MANUFACTURER, 0)
    }
    pub fn model(&self) -> Option<String> {
        crate::core_abi::request_text(field::MODEL, 0)
    }
    pub fn firmware(&self) -> Option<String> {
        crate::core_abi::request_text(field::FIRMWARE, 0)
    }
    /// The command's name (downlink); [`Symbol::OTHER`] for uplinks.
    #[inline]
    pub fn name(&self) -> Symbol {
        crate::core_abi::sym(off::NAME)
    }
    /// Who issued a downlink (e.g. `mqtt:operator`); `None` for uplinks.
    pub fn principal(&self) -> Option<String> {
        crate::core_abi::request_text(field::PRINCIPAL, 0)
    }
    #[inline]
    pub fn observed(&self) -> Observed {
        crate::core_abi::observed()
    }
    /// The protocol's name for the security the message came under (`zwave-s2-access-control`,
    /// `zwave-s0`, …; for a command, the one the device was last heard under). `None` when the
    /// adapter has nothing finer to say than the assurance; `Some(Symbol::OTHER)` for a label
    /// the plugin never interned.
    #[inline]
    pub fn security(&self) -> Option<Symbol> {
        crate::core_abi::has(off::HAS_SECURITY).then(|| crate::core_abi::sym(off::SECURITY))
    }
    pub fn security_text(&self) -> Option<String> {
        crate::core_abi::request_text(field::SECURITY, 0)
    }
    /// The feature that contributed most to [`Observed::anomaly_score`] (`rate`,
    /// `value:temperature`, …).
    pub fn anomaly_feature(&self) -> Option<String> {
        crate::core_abi::request_text(field::ANOMALY_FEATURE, 0)
    }
    /// The `index`-th point's (argument's) name; [`Symbol::OTHER`] past the end.
    #[inline]
    pub fn point_name(&self, index: u32) -> Symbol {
        crate::core_abi::point_name(index)
    }
    pub fn point_value(&self, index: u32) -> Option<Value> {
        crate::core_abi::point_value(index)
    }
    pub fn point_unit(&self, index: u32) -> Option<String> {
        crate::core_abi::request_text(field::POINT_UNIT, index)
    }
    /// The index of the first point (argument) named `name`.
    #[inline]
    pub fn find_point(&self, name: Symbol) -> Option<u32> {
        crate::core_abi::find(name)
    }
    pub fn zone_text(&self) -> String {
        crate::core_abi::request_text(field::ZONE, 0).unwrap_or_default()
    }
    pub fn role_text(&self) -> Option<String> {
        crate::core_abi::request_text(field::ROLE, 0)
    }
    /// The command's name as text (empty for uplinks).
    pub fn name_text(&self) -> String {
        crate::core_abi::request_text(field::NAME, 0).unwrap_or_default()
    }
    pub fn point_name_text(&self, index: u32) -> Option<String> {
        crate::core_abi::request_text(field::POINT_NAME, index)
    }
}

#[cfg(warden_core_abi)]
use warden_plugin_abi::{field, off};

#[cfg(warden_component)]
impl Request {
    #[inline]
    pub(crate) fn from_wit(r: &crate::wasm::wit::host::Request) -> &Request {
        // SAFETY: `Request` is `repr(transparent)` over the WIT handle type, so the two references
        // have the same layout, and the returned reference borrows from `r`.
        unsafe { &*(r as *const crate::wasm::wit::host::Request as *const Request) }
    }

    /// The device's id, `protocol:address`.
    pub fn device_id(&self) -> String {
        self.0.device_id()
    }
    #[inline]
    pub fn protocol(&self) -> Symbol {
        Symbol(self.0.protocol())
    }
    #[inline]
    pub fn zone(&self) -> Symbol {
        Symbol(self.0.zone())
    }
    /// `None` when the device has no role; `Some(Symbol::OTHER)` for a role the plugin never
    /// interned.
    #[inline]
    pub fn role(&self) -> Option<Symbol> {
        self.0.role().map(Symbol)
    }
    pub fn status(&self) -> Status {
        use crate::wasm::wit::types::Status as S;
        match self.0.status() {
            S::Pending => Status::Pending,
            S::Active => Status::Active,
            S::Quarantined => Status::Quarantined,
            S::Revoked => Status::Revoked,
        }
    }
    pub fn manufacturer(&self) -> Option<String> {
        self.0.manufacturer()
    }
    pub fn model(&self) -> Option<String> {
        self.0.model()
    }
    pub fn firmware(&self) -> Option<String> {
        self.0.firmware()
    }
    /// The command's name (downlink); [`Symbol::OTHER`] for uplinks.
    #[inline]
    pub fn name(&self) -> Symbol {
        Symbol(self.0.name())
    }
    /// Who issued a downlink (e.g. `mqtt:operator`); `None` for uplinks.
    pub fn principal(&self) -> Option<String> {
        self.0.principal()
    }
    pub fn observed(&self) -> Observed {
        let o = self.0.observed();
        Observed {
            rate_per_min: o.rate_per_min,
            messages: o.messages,
            bytes: o.bytes,
            denied: o.denied,
            last_seen_ms: o.last_seen_ms,
            anomaly_score: o.anomaly_score,
        }
    }
    /// The protocol's name for the security the message came under (`zwave-s2-access-control`,
    /// `zwave-s0`, …; for a command, the one the device was last heard under). `None` when the
    /// adapter has nothing finer to say than the assurance; `Some(Symbol::OTHER)` for a label
    /// the plugin never interned. (Contract 0.1.1.)
    #[inline]
    pub fn security(&self) -> Option<Symbol> {
        self.0.security().map(Symbol)
    }
    pub fn security_text(&self) -> Option<String> {
        self.0.security_text()
    }
    /// The feature that contributed most to [`Observed::anomaly_score`] (`rate`,
    /// `value:temperature`, …). (Contract 0.1.1.)
    pub fn anomaly_feature(&self) -> Option<String> {
        self.0.anomaly_feature()
    }
    /// The `index`-th point's (argument's) name; [`Symbol::OTHER`] past the end.
    #[inline]
    pub fn point_name(&self, index: u32) -> Symbol {
        Symbol(self.0.point_name(index))
    }
    pub fn point_value(&self, index: u32) -> Option<Value> {
        use crate::wasm::wit::types::Value as V;
        self.0.point_value(index).map(|v| match v {
            V::Boolean(b) => Value::Bool(b),
            V::Integer(i) => Value::Int(i),
            V::Float(f) => Value::Float(f),
            V::Text(t) => Value::Text(t),
            V::Bytes(b) => Value::Bytes(b),
        })
    }
    pub fn point_unit(&self, index: u32) -> Option<String> {
        self.0.point_unit(index)
    }
    /// The index of the first point (argument) named `name`.
    #[inline]
    pub fn find_point(&self, name: Symbol) -> Option<u32> {
        self.0.find_point(name.0)
    }
    pub fn zone_text(&self) -> String {
        self.0.zone_text()
    }
    pub fn role_text(&self) -> Option<String> {
        self.0.role_text()
    }
    /// The command's name as text (empty for uplinks).
    pub fn name_text(&self) -> String {
        self.0.name_text()
    }
    pub fn point_name_text(&self, index: u32) -> Option<String> {
        self.0.point_name_text(index)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Request {
    fn sym(name: &str) -> Symbol {
        crate::mock::with(|h| h.lookup(name))
    }

    fn point(&self, index: u32) -> Option<&crate::testing::Point> {
        self.points.get(index as usize)
    }

    /// The device's id, `protocol:address`.
    pub fn device_id(&self) -> String {
        self.device_id.clone()
    }
    pub fn protocol(&self) -> Symbol {
        Self::sym(&self.protocol)
    }
    pub fn zone(&self) -> Symbol {
        Self::sym(&self.zone)
    }
    /// `None` when the device has no role; `Some(Symbol::OTHER)` for a role the plugin never
    /// interned.
    pub fn role(&self) -> Option<Symbol> {
        self.role.as_deref().map(Self::sym)
    }
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn manufacturer(&self) -> Option<String> {
        self.manufacturer.clone()
    }
    pub fn model(&self) -> Option<String> {
        self.model.clone()
    }
    pub fn firmware(&self) -> Option<String> {
        self.firmware.clone()
    }
    /// The command's name (downlink); [`Symbol::OTHER`] for uplinks.
    pub fn name(&self) -> Symbol {
        if self.name.is_empty() {
            Symbol::OTHER
        } else {
            Self::sym(&self.name)
        }
    }
    /// Who issued a downlink (e.g. `mqtt:operator`); `None` for uplinks.
    pub fn principal(&self) -> Option<String> {
        self.principal.clone()
    }
    pub fn observed(&self) -> Observed {
        self.observed
    }
    /// The protocol's name for the security the message came under (`zwave-s2-access-control`,
    /// `zwave-s0`, …; for a command, the one the device was last heard under). `None` when the
    /// adapter has nothing finer to say than the assurance; `Some(Symbol::OTHER)` for a label
    /// the plugin never interned.
    pub fn security(&self) -> Option<Symbol> {
        self.security.as_deref().map(Self::sym)
    }
    pub fn security_text(&self) -> Option<String> {
        self.security.clone()
    }
    /// The feature that contributed most to [`Observed::anomaly_score`] (`rate`,
    /// `value:temperature`, …).
    pub fn anomaly_feature(&self) -> Option<String> {
        self.anomaly_feature.clone()
    }
    /// The `index`-th point's (argument's) name; [`Symbol::OTHER`] past the end.
    pub fn point_name(&self, index: u32) -> Symbol {
        self.point(index)
            .map_or(Symbol::OTHER, |p| Self::sym(&p.name))
    }
    pub fn point_value(&self, index: u32) -> Option<Value> {
        self.point(index).map(|p| p.value.clone())
    }
    pub fn point_unit(&self, index: u32) -> Option<String> {
        self.point(index).and_then(|p| p.unit.clone())
    }
    /// The index of the first point (argument) named `name`.
    pub fn find_point(&self, name: Symbol) -> Option<u32> {
        if !name.is_known() {
            return None;
        }
        self.points
            .iter()
            .position(|p| Self::sym(&p.name) == name)
            .map(|i| i as u32)
    }
    pub fn zone_text(&self) -> String {
        self.zone.clone()
    }
    pub fn role_text(&self) -> Option<String> {
        self.role.clone()
    }
    /// The command's name as text (empty for uplinks).
    pub fn name_text(&self) -> String {
        self.name.clone()
    }
    pub fn point_name_text(&self, index: u32) -> Option<String> {
        self.point(index).map(|p| p.name.clone())
    }
}
