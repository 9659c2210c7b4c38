//! Links with the x86_64 image layout and defmt's table, and embeds the bundle xtask prepared.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let link = manifest.join("../../arch/x86_64/link.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", link.display());
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    // A SHA-1 over the image, which `cargo xtask monitor` matches against the log's.
    println!("cargo:rustc-link-arg-bins=--build-id=sha1");
    println!("cargo:rerun-if-changed={}", link.display());
    println!("cargo:rerun-if-env-changed=TANDEM_BUNDLE");
    match env::var("TANDEM_BUNDLE") {
        Ok(bundle) => println!("cargo:rerun-if-changed={bundle}"),
        Err(_) => {
            eprintln!(
                "TANDEM_BUNDLE is not set: build the hypervisor with `cargo xtask build --board NAME`, \
                 which validates the configuration and prepares the bundle"
            );
            std::process::exit(1);
        }
    }
}
