//! Guests are linked at 0x4010_0000 with `_start` first, where partitions' configs load and enter them.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let link = manifest.join("link.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", link.display());
    println!("cargo:rerun-if-changed={}", link.display());
}
