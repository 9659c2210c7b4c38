//! The board and partition configuration as data.
//!
//! The host tool (`xtask`) parses the TOML files, resolves defaults, validates the result with
//! [`validate`] and embeds it in the image as a postcard blob; the hypervisor decodes and validates
//! the same blob again at boot, so a corrupt image is refused instead of half-applied.

mod error;
mod mac;
mod model;
mod pc;
mod validate;

pub use error::{ConfigError, Field, Problem};
pub use mac::MAC_TEXT;
pub use model::*;
pub use pc::LOW_MEMORY_END;
pub use validate::{MAX_GPA, X86_BOOT_TABLES, validate};

#[cfg(test)]
mod tests;
