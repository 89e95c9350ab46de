//! `warden plugin new` and `warden plugin build`: a plugin project outside this repository that
//! builds and tests out of the box, and the build command for it (or for any plugin crate).
//!
//! A Rust project carries its own copy of the SDK and the contract (`warden-sdk/`, `wit/`) taken
//! from this binary, so it matches the gateway that made it, and the plugin workspace's lock file,
//! so its dependencies are the versions this project tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The languages `plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    C,
    Python,
    #[value(name = "js")]
    Javascript,
}

impl Lang {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::C => "c",
            Self::Python => "python",
            Self::Javascript => "js",
        }
    }
}

/// `warden-plugin.toml`: marks a Python or JavaScript plugin project for `plugin build`.
const MARKER: &str = "warden-plugin.toml";
/// The build tools' pinned versions (as tests/scripts/install-wasm-langs.sh installs them).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const JS_PACKAGE_LOCK: &str =
    include_str!("../../../plugins/examples/assurance-floor-js/package-lock.json");

const SDK_FILES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../plugins/sdk/src/lib.rs")),
    (
        "config.rs",
        include_str!("../../../plugins/sdk/src/config.rs"),
    ),
    ("host.rs", include_str!("../../../plugins/sdk/src/host.rs")),
    ("mock.rs", include_str!("../../../plugins/sdk/src/mock.rs")),
    (
        "request.rs",
        include_str!("../../../plugins/sdk/src/request.rs"),
    ),
    (
        "testing.rs",
        include_str!("../../../plugins/sdk/src/testing.rs"),
    ),
    (
        "types.rs",
        include_str!("../../../plugins/sdk/src/types.rs"),
    ),
    ("wasm.rs", include_str!("../../../plugins/sdk/src/wasm.rs")),
    (
        "core_abi.rs",
        include_str!("../../../plugins/sdk/src/core_abi.rs"),
    ),
    (
        "runtime.rs",
        include_str!("../../../plugins/sdk/src/runtime.rs"),
    ),
];
const SDK_BUILD_RS: &str = include_str!("../../../plugins/sdk/build.rs");
const ABI_LIB: &str = include_str!("../../plugin-abi/src/lib.rs");
const ABI_MANIFEST: &str = include_str!("../../plugin-abi/Cargo.toml");
const C_HEADER: &str = include_str!("../../../plugins/sdk-c/warden_policy.h");
const C_PLUGIN: &str = include_str!("scaffold/c_plugin.c.txt");
const WIT: &str = include_str!("../../../plugins/wit/policy.wit");
const LOCK: &str = include_str!("../../../plugins/Cargo.lock");
const RUST_LIB: &str = include_str!("scaffold/rust_lib.rs.txt");
const PY_APP: &str = include_str!("scaffold/python_app.py.txt");
const JS_APP: &str = include_str!("scaffold/js_app.js.txt");
const TESTS: &str = include_str!("scaffold/tests.jsonl.txt");

const SDK_MANIFEST: &str = r#"[package]
name = "warden-plugin-sdk"
description = "Write Warden policy plugins in Rust (copied by `warden plugin new`)"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
name = "warden_sdk"

[features]
default = ["runtime"]
runtime = ["dep:dlmalloc"]

[dependencies]
serde = { version = "1", default-features = false, features = ["derive", "alloc"] }
serde_json = { version = "1", default-features = false, features = ["alloc"] }
warden-plugin-abi = { path = "../warden-plugin-abi" }

[target.'cfg(target_arch = "wasm32")'.dependencies]
dlmalloc = { version = "0.2", features = ["global"], optional = true }

# Only for the 0.1.x component contract (wasm32-wasip2).
[target.'cfg(all(target_arch = "wasm32", target_env = "p2"))'.dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros"] }

[target.'cfg(not(target_arch = "wasm32"))'.dependencies]
serde = { version = "1", features = ["std"] }
serde_json = { version = "1", features = ["std"] }
"#;

/// A plugin name: what `[[plugins.load]] name` takes, used for the crate and the module too.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "plugin name `{name}`: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter"
        );
    }
    Ok(())
}

/// `warden plugin new NAME --lang …`: writes the project into `dir` (which must not exist).
pub fn new(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<()> {
    check_name(name)?;
    if dir.exists() {
        bail!("{} already exists; choose another --dir", dir.display());
    }
    let module = name.replace('-', "_");
    let files: Vec<(PathBuf, String)> = match lang {
        Lang::Rust => rust_files(name, &module),
        Lang::C => c_files(name, &module),
        Lang::Python | Lang::Javascript => other_files(name, &module, lang),
    };
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created {} ({} files)", dir.display(), files.len());
    println!("next:");
    println!("  cd {}", dir.display());
    match lang {
        Lang::Rust => {
            println!("  cargo test                    # native unit tests and tests.jsonl")
        }
        Lang::C => println!("  (needs clang-19 and wasm-ld-19: apt install clang-19 lld-19)"),
        Lang::Python => {
            println!("  pip install {COMPONENTIZE_PY}   # the build tool (or --tool PATH)")
        }
        Lang::Javascript => println!("  npm install                   # the pinned build tools"),
    }
    println!("  warden plugin build           # -> target/plugin/{module}.wasm");
    println!(
        "  warden plugin test target/plugin/{module}.wasm --messages tests.jsonl --config config.json"
    );
    Ok(())
}

/// A Python or JavaScript project: the entry file, the contract, config, tests, README, marker.
fn other_files(name: &str, module: &str, lang: Lang) -> Vec<(PathBuf, String)> {
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{module}}", module);
    let (entry, app) = match lang {
        Lang::Python => ("app.py", PY_APP),
        _ => ("app.js", JS_APP),
    };
    let mut files = vec![
        (
            MARKER.into(),
            format!(
                "# Read by `warden plugin build`.\nname = \"{name}\"\nlang = \"{}\"\nentry = \"{entry}\"\n",
                lang.as_str()
            ),
        ),
        (entry.into(), fill(app)),
        (
            "config.json".into(),
            "{\"blocked_points\": [\"debug_shell\"]}\n".into(),
        ),
        ("tests.jsonl".into(), TESTS.to_owned()),
        ("wit/policy.wit".into(), WIT.to_owned()),
        (
            ".gitignore".into(),
            "/target\n/node_modules\n__pycache__/\n".into(),
        ),
        (
            "README.md".into(),
            fill(OTHER_README).replace("{{entry}}", entry),
        ),
    ];
    if lang == Lang::Javascript {
        files.push((
            "package.json".into(),
            format!(
                r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "description": "A Warden policy plugin (build tools only; nothing here runs under node)",
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/jco": "1.35.0",
    "@bytecodealliance/preview2-shim": "0.17.9"
  }}
}}
"#
            ),
        ));
        files.push(("package-lock.json".into(), JS_PACKAGE_LOCK.to_owned()));
    }
    files
}

const OTHER_README: &str = r#"# {{name}}

A Warden policy plugin made by `warden plugin new`. `{{entry}}` is the policy; `wit/` is the
contract of the gateway that made this project; `tests.jsonl` holds requests with the verdicts
they must get under `config.json`.

```sh
warden plugin build                          # target/plugin/{{module}}.wasm (--tool PATH for the build tool)
warden plugin test target/plugin/{{module}}.wasm --messages tests.jsonl --config config.json
```

Python needs componentize-py (`pip install componentize-py==0.25.1`); its runtime imports WASI, so
the gateway must grant it: `wasi = ["cli", "clocks", "filesystem", "io", "random", "sockets"]` in
the plugin's `[[plugins.load]]` (and `--wasi cli,clocks,filesystem,io,random,sockets` for
`warden plugin test`). JavaScript needs `npm install` (pinned componentize-js) and no WASI grant.

Deploy: copy `target/plugin/{{module}}.wasm` into the gateway's `plugins.dir` with `tests.jsonl`
beside it as `{{module}}.tests.jsonl`, sign it (`warden plugin sign {{module}}.wasm --key YOUR.key`)
and add a `[[plugins.load]]` (name `{{name}}`, module `{{module}}.wasm`) and a `[[plugins.bind]]`.
"#;

/// A C project: the plugin, the contract's header, config, tests, README, marker.
fn c_files(name: &str, module: &str) -> Vec<(PathBuf, String)> {
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{module}}", module);
    vec![
        (
            MARKER.into(),
            format!(
                "# Read by `warden plugin build`.\nname = \"{name}\"\nlang = \"c\"\nentry = \"plugin.c\"\n"
            ),
        ),
        ("plugin.c".into(), fill(C_PLUGIN)),
        ("warden_policy.h".into(), C_HEADER.to_owned()),
        (
            "config.json".into(),
            "{\"blocked_points\": [\"debug_shell\"]}\n".into(),
        ),
        ("tests.jsonl".into(), TESTS.to_owned()),
        (".gitignore".into(), "/target\n".into()),
        (
            "README.md".into(),
            fill(OTHER_README).replace("{{entry}}", "plugin.c"),
        ),
    ]
}

fn rust_files(name: &str, module: &str) -> Vec<(PathBuf, String)> {
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{module}}", module);
    let mut files = vec![
        (
            "Cargo.toml".into(),
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
warden-plugin-sdk = {{ path = "warden-sdk" }}
serde = {{ version = "1", default-features = false, features = ["derive", "alloc"] }}

# A workspace of its own (also when the directory sits inside another one).
[workspace]
members = [".", "warden-sdk", "warden-plugin-abi"]

[profile.release]
opt-level = 3
lto = true
panic = "abort"
codegen-units = 1
strip = "debuginfo"
"#
            ),
        ),
        ("Cargo.lock".into(), LOCK.to_owned()),
        ("src/lib.rs".into(), fill(RUST_LIB)),
        (
            "config.json".into(),
            "{\"blocked_points\": [\"debug_shell\"]}\n".into(),
        ),
        ("tests.jsonl".into(), TESTS.to_owned()),
        ("wit/policy.wit".into(), WIT.to_owned()),
        ("warden-sdk/Cargo.toml".into(), SDK_MANIFEST.to_owned()),
        ("warden-sdk/build.rs".into(), SDK_BUILD_RS.to_owned()),
        (
            "warden-plugin-abi/Cargo.toml".into(),
            ABI_MANIFEST.to_owned(),
        ),
        ("warden-plugin-abi/src/lib.rs".into(), ABI_LIB.to_owned()),
        (".gitignore".into(), "/target\n".into()),
        ("README.md".into(), fill(RUST_README)),
    ];
    for (f, text) in SDK_FILES {
        files.push((format!("warden-sdk/src/{f}").into(), (*text).to_owned()));
    }
    files
}

const RUST_README: &str = r#"# {{name}}

A Warden policy plugin in Rust, made by `warden plugin new`.

```sh
cargo test                                   # native: unit tests and tests.jsonl
warden plugin build                          # contract 0.2.0 core module: target/plugin/{{module}}.wasm
warden plugin test target/plugin/{{module}}.wasm --messages tests.jsonl --config config.json
```

Deploy: copy `target/plugin/{{module}}.wasm` into the gateway's `plugins.dir`, copy `tests.jsonl` beside
it as `{{module}}.tests.jsonl` (the gateway runs it before activating every version), sign it with
`warden plugin sign {{module}}.wasm --key YOUR.key`, and add to the gateway's config:

```toml
[[plugins.load]]
name = "{{name}}"
module = "{{module}}.wasm"
config = { blocked_points = ["debug_shell"] }

[[plugins.bind]]
plugin = "{{name}}"
```

A changed module (with its `.sig`) is hot-reloaded; a changed `config` takes effect on a config
reload. `warden-sdk/` and `warden-plugin-abi/` are the SDK and the contract (0.2.0) of the gateway
that made this project; `wit/` is the older component contract (0.1.1), used only when the crate
is built for wasm32-wasip2.
"#;

/// The Debian wasm toolchain `plugin build` uses (tests/scripts/install-wasm.sh installs it).
const DEB_RUSTC: &str = "/usr/bin/rustc";
const DEB_CARGO: &str = "/usr/bin/cargo";
const WASM_LD: &str = "/usr/bin/wasm-ld-19";

/// `warden plugin build [DIR]`: builds the Rust plugin crate in `dir` into a contract 0.2.0
/// core module,
/// `DIR/target/plugin/<crate with _>.wasm`, and returns its path. `target_dir` shares a cargo
/// target dir between projects (the standard library is compiled once per target dir).
pub fn build(
    dir: &Path,
    target_dir: Option<&Path>,
    tool: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    // absolute: the tools run in the project directory
    let dir = &std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    if dir.join(MARKER).is_file() {
        return build_other(dir, tool);
    }
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("{}: not a Rust plugin crate", manifest.display()))?;
    let t: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", manifest.display()))?;
    let name = t
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| format!("{}: no [package] name", manifest.display()))?
        .to_owned();
    for f in [DEB_RUSTC, DEB_CARGO, WASM_LD] {
        if !Path::new(f).exists() {
            bail!(
                "{f} missing: plugin builds use Debian's rustc-web, cargo-web, rust-web-src and lld-19 (apt install rustc-web cargo-web rust-web-src lld-19, or tests/scripts/install-wasm.sh in Warden's repository)"
            );
        }
    }
    let target = match target_dir {
        Some(t) => t.to_owned(),
        None => dir.join("target"),
    };
    let status = Command::new(DEB_CARGO)
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", DEB_RUSTC)
        .env("RUSTDOC", "/usr/bin/rustdoc")
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", WASM_LD)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
            "-p",
            &name,
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .with_context(|| format!("cannot run {DEB_CARGO}"))?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let module = format!("{}.wasm", name.replace('-', "_"));
    let built = target.join("wasm32-unknown-unknown/release").join(&module);
    let out_dir = dir.join("target/plugin");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out = out_dir.join(&module);
    std::fs::copy(&built, &out)
        .with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
    Ok(out)
}

/// Builds a Python or JavaScript project (marked by `warden-plugin.toml`) with its language's
/// componentizer: `tool`, else `WARDEN_COMPONENTIZE_PY` / `WARDEN_COMPONENTIZE_JS`, else
/// `componentize-py` on the PATH / the project's `node_modules/.bin/componentize-js`.
fn build_other(dir: &Path, tool: Option<&Path>) -> anyhow::Result<PathBuf> {
    let marker = dir.join(MARKER);
    let t: toml::Table = toml::from_str(
        &std::fs::read_to_string(&marker)
            .with_context(|| format!("cannot read {}", marker.display()))?,
    )
    .with_context(|| format!("{}: not TOML", marker.display()))?;
    let field = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("{}: no `{k}`", marker.display()))
    };
    let (name, lang, entry) = (field("name")?, field("lang")?, field("entry")?);
    check_name(&name)?;
    if entry.contains('/') || entry.starts_with('.') {
        bail!(
            "{}: entry `{entry}` must be a file in the project directory",
            marker.display()
        );
    }
    let module = name.replace('-', "_");
    let out_dir = dir.join("target/plugin");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out = out_dir.join(format!("{module}.wasm"));
    let from_env = |var: &str| std::env::var_os(var).map(PathBuf::from);
    let mut cmd = match lang.as_str() {
        "python" => {
            let tool = tool
                .map(Path::to_owned)
                .or_else(|| from_env("WARDEN_COMPONENTIZE_PY"))
                .unwrap_or_else(|| PathBuf::from("componentize-py"));
            let stem = entry.strip_suffix(".py").unwrap_or(&entry);
            let mut c = Command::new(tool);
            c.args(["-d", "wit", "-w", "plugin", "componentize", stem, "-o"])
                .arg(&out);
            c
        }
        "c" => {
            let tool = tool
                .map(Path::to_owned)
                .or_else(|| from_env("WARDEN_CC"))
                .unwrap_or_else(|| PathBuf::from("clang-19"));
            let mut c = Command::new(tool);
            c.args([
                "--target=wasm32",
                "-O2",
                "-std=c11",
                "-Wall",
                "-nostdlib",
                "-ffreestanding",
            ])
            .arg(format!("-fuse-ld={WASM_LD}"))
            .args([
                "-Wl,--no-entry",
                "-Wl,--export-dynamic",
                "-Wl,--strip-debug",
                "-o",
            ])
            .arg(&out)
            .arg(&entry);
            c
        }
        "js" => {
            let tool = tool
                .map(Path::to_owned)
                .or_else(|| from_env("WARDEN_COMPONENTIZE_JS"))
                .unwrap_or_else(|| dir.join("node_modules/.bin/componentize-js"));
            let mut c = Command::new(tool);
            // no optional engine feature: the component imports no WASI at all
            c.args([
                entry.as_str(),
                "--wit",
                "wit",
                "--world-name",
                "plugin",
                "--disable",
                "stdio",
                "random",
                "clocks",
                "http",
                "fetch-event",
                "-o",
            ])
            .arg(&out);
            c
        }
        other => bail!(
            "{}: unknown lang `{other}` (c, python or js)",
            marker.display()
        ),
    };
    let status = cmd
        .current_dir(dir)
        .status()
        .with_context(|| match lang.as_str() {
            "python" => format!(
                "cannot run componentize-py: `pip install {COMPONENTIZE_PY}`, or pass --tool PATH"
            ),
            "c" => "cannot run clang-19: `apt install clang-19 lld-19`, or pass --tool PATH".into(),
            _ => "cannot run componentize-js: `npm install` in the project, or pass --tool PATH"
                .into(),
        })?;
    if !status.success() || !out.is_file() {
        bail!(
            "the {lang} build failed ({status}; {} not made)",
            out.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn names_are_checked_and_a_project_is_written_once() {
        for bad in ["", "Caps", "1st", "a b", "../x", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("p");
        new("speed-limit", Lang::Rust, &dir).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.starts_with("//! # speed-limit"), "{lib}");
        assert!(lib.contains("target/plugin/speed_limit.wasm"));
        assert!(dir.join("warden-sdk/src/wasm.rs").is_file());
        assert!(dir.join("warden-sdk/src/core_abi.rs").is_file());
        assert!(dir.join("warden-plugin-abi/src/lib.rs").is_file());
        // C: the plugin and the contract's header
        let c = d.path().join("c");
        new("door-guard", Lang::C, &c).unwrap();
        let src = std::fs::read_to_string(c.join("plugin.c")).unwrap();
        assert!(
            src.contains("door_guard.wasm") && !src.contains("{{"),
            "{src}"
        );
        assert!(
            std::fs::read_to_string(c.join("warden_policy.h"))
                .unwrap()
                .contains("warden:policy/host@0.2.0")
        );
        assert!(dir.join("wit/policy.wit").is_file());
        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(cargo["package"]["name"].as_str(), Some("speed-limit"));
        // never over an existing directory
        let e = new("speed-limit", Lang::Rust, &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists"), "{e}");
    }
}
