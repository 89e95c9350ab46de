//! Picks the contract from the target: a component (contract 0.1.0, WIT) on wasm32-wasip2, a
//! core module (contract 0.2.0, the faster one) on every other wasm32 target.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(warden_component)");
    println!("cargo::rustc-check-cfg=cfg(warden_core_abi)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if arch == "wasm32" {
        if env == "p2" {
            println!("cargo::rustc-cfg=warden_component");
        } else {
            println!("cargo::rustc-cfg=warden_core_abi");
        }
    }
}
