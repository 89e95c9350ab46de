//! Which WASI 0.2 packages a plugin may import, granted per plugin in its load config. Rust and C
//! plugins import none; Python and JavaScript runtimes import several. A component importing a
//! package its config does not grant is refused at load with the list to grant. A granted package
//! still grants no resources: no preopened directories, sockets, environment or arguments, clocks
//! frozen at the decision's time (plugin.rs).

/// The packages that can be granted, by their name in `wasi:<name>/…`.
pub const PACKAGES: [&str; 6] = ["cli", "clocks", "filesystem", "io", "random", "sockets"];

/// A set of granted WASI packages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WasiGrants(u8);

impl WasiGrants {
    /// Nothing granted (the default).
    pub const NONE: WasiGrants = WasiGrants(0);

    /// Every package.
    pub fn all() -> Self {
        WasiGrants((1 << PACKAGES.len()) - 1)
    }

    /// From names such as `["cli", "io"]`; unknown names are errors naming the known ones.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut bits = 0u8;
        for n in names {
            let n = n.as_ref();
            let i = PACKAGES.iter().position(|p| *p == n).ok_or_else(|| {
                format!(
                    "unknown WASI package `{n}` (known: {})",
                    PACKAGES.join(", ")
                )
            })?;
            bits |= 1 << i;
        }
        Ok(WasiGrants(bits))
    }

    /// Exactly the packages `imports` (a component's WASI imports) need: for tools that run a
    /// known plugin, such as the benchmark. The gateway takes grants from the load config.
    pub fn required(imports: &[String]) -> Self {
        let names: Vec<&str> = imports.iter().filter_map(|i| package(i)).collect();
        let mut bits = 0u8;
        for n in names {
            if let Some(i) = PACKAGES.iter().position(|p| *p == n) {
                bits |= 1 << i;
            }
        }
        WasiGrants(bits)
    }

    pub fn has(self, package: &str) -> bool {
        PACKAGES
            .iter()
            .position(|p| *p == package)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    pub fn names(self) -> Vec<&'static str> {
        PACKAGES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, p)| *p)
            .collect()
    }
}

/// The package of a WASI import name (`wasi:io/streams@0.2.3` → `io`).
fn package(import: &str) -> Option<&str> {
    let rest = import.strip_prefix("wasi:")?;
    Some(rest.split(['/', '@']).next().unwrap_or(rest))
}

/// Checks a component's WASI imports against what its config grants.
pub fn check(imports: &[String], grants: WasiGrants) -> Result<(), String> {
    let mut missing: Vec<&str> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for i in imports {
        match package(i) {
            Some(p) if PACKAGES.contains(&p) => {
                if !grants.has(p) && !missing.contains(&p) {
                    missing.push(p);
                }
            }
            _ => unknown.push(i),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "plugin imports WASI interfaces this gateway does not provide: {}",
            unknown.join(", ")
        ));
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    let mut wanted = grants.names();
    wanted.extend(missing.iter().copied());
    wanted.sort_unstable();
    Err(format!(
        "plugin imports WASI {} that its load config does not grant (granted: [{}]); grant with wasi = [{}] in its [[plugins.load]] (or `--wasi {}` for `warden plugin test`)",
        missing
            .iter()
            .map(|p| format!("`wasi:{p}`"))
            .collect::<Vec<_>>()
            .join(", "),
        grants.names().join(", "),
        wanted
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", "),
        wanted.join(",")
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grants_parse_and_check() {
        let g = WasiGrants::parse(&["io", "cli"]).unwrap();
        assert_eq!(g.names(), ["cli", "io"]);
        assert!(
            WasiGrants::parse(&["net"])
                .unwrap_err()
                .contains("known: cli")
        );
        let imports = vec![
            "wasi:io/streams@0.2.3".to_owned(),
            "wasi:cli/stdout@0.2.3".to_owned(),
        ];
        assert!(check(&imports, g).is_ok());
        let e = check(&imports, WasiGrants::NONE).unwrap_err();
        assert!(e.contains("`wasi:cli`, `wasi:io`"), "{e}");
        assert!(e.contains(r#"wasi = ["cli", "io"]"#), "{e}");
        let e = check(&["wasi:http/types@0.2.0".to_owned()], WasiGrants::all()).unwrap_err();
        assert!(e.contains("does not provide: wasi:http/types"), "{e}");
        assert!(check(&[], WasiGrants::NONE).is_ok());
        assert_eq!(WasiGrants::all().names(), PACKAGES);
        assert_eq!(WasiGrants::required(&imports), g);
    }
}
