//! The dashboard's files, embedded in the binary (no build step, no CDN): HTML, CSS and plain
//! JavaScript modules from `gateway/web/`. Only the login page's own files are served without a
//! session.

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// Served without a session (the login page and what it loads).
    pub public: bool,
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $ct:expr, $public:expr) => {
        Asset {
            name: $name,
            content_type: $ct,
            body: include_str!(concat!("../../web/", $name)),
            public: $public,
        }
    };
}

pub const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8", true),
    asset!("login.js", JS, true),
    asset!("lib.js", JS, false),
    asset!("app.js", JS, false),
    asset!("overview.js", JS, false),
    asset!("devices.js", JS, false),
    asset!("device.js", JS, false),
    asset!("pending.js", JS, false),
    asset!("quarantine.js", JS, false),
    asset!("live.js", JS, false),
    asset!("audit.js", JS, false),
    asset!("plugins.js", JS, false),
    asset!("adapters.js", JS, false),
];

/// The login page (public).
pub const LOGIN_HTML: &str = include_str!("../../web/login.html");
/// The page shell every dashboard page is served in (its script renders the page).
pub const APP_HTML: &str = include_str!("../../web/app.html");

pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}
