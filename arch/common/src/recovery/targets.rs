//! Where the memory fault model aims (`tandem_recovery::inject::Model::Memory`), for the targets
//! every backend has; each backend adds its own (x86: a VMCS field; aarch64: a stage-2 table).

use tandem_recovery::inject::Rng;

/// An aligned word for the memory model's choice `which`: 0 the ledger, 1 the image's writable
/// data and `.bss` (`data`), 2 the 4 KiB above the stack pointer `sp`. `None` for any other
/// choice, which is the backend's own target.
pub fn common_word(
    rng: &mut Rng,
    which: u64,
    data: (u64, u64),
    sp: u64,
) -> Option<(&'static str, u64)> {
    Some(match which {
        0 => {
            let (base, size) = super::ledger_range();
            ("ledger", base + rng.below(size / 8) * 8)
        }
        1 => (".data/.bss", data.0 + rng.below((data.1 - data.0) / 8) * 8),
        2 => ("stack", (sp & !7) + rng.below(512) * 8),
        _ => return None,
    })
}
