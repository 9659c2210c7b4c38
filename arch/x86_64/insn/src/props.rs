//! Property tests: `decode` on any input, in both modes, never panics and never claims bytes it
//! was not given. `TANDEM_FUZZ_CASES=N` raises the number of cases (a fuzz run, e.g. 10^6 with
//! `cargo test -p tandem-x86-insn --release`).

use proptest::prelude::*;

use super::*;

/// Cases per property in the normal suite.
const DEFAULT_CASES: u32 = 4096;

fn config() -> ProptestConfig {
    let cases = std::env::var("TANDEM_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Bits64), Just(Mode::Bits32)]
}

/// Bytes shaped like the instructions the decoder accepts (prefixes, REX, opcodes, ModRM/SIB
/// forms and displacements), cut anywhere, so every accepting and refusing path is reached
/// rather than only the first-byte refusal that uniform bytes mostly hit.
fn shaped() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop::sample::select(vec![0x66u8, 0x67, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65]);
    let opcode = prop::sample::select(vec![
        vec![0x88u8],
        vec![0x89],
        vec![0x8a],
        vec![0x8b],
        vec![0xc6],
        vec![0xc7],
        vec![0x0f, 0xb6],
        vec![0x0f, 0xb7],
        vec![0x0f, 0xaf],
        vec![0x01],
    ]);
    (
        prop::collection::vec(prefix, 0..16),
        prop::option::of(0x40u8..=0x4f),
        opcode,
        prop::collection::vec(any::<u8>(), 0..12),
        0usize..=MAX_LEN,
    )
        .prop_map(|(prefixes, rex, opcode, tail, keep)| {
            let mut bytes = prefixes;
            bytes.extend(rex);
            bytes.extend(opcode);
            bytes.extend(tail);
            bytes.truncate(keep);
            bytes
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..=MAX_LEN), shaped()]
}

/// What must hold for every input: a decoded instruction lies within the bytes given and is a
/// possible MOV for the mode; a refusal is stable; a shorter fetch of a decoded instruction
/// reports exactly how many bytes it had.
fn check(bytes: &[u8], mode: Mode) -> Result<(), TestCaseError> {
    match decode(bytes, mode) {
        Ok(i) => {
            let len = usize::from(i.len);
            prop_assert!(len <= bytes.len() && len <= MAX_LEN);
            prop_assert!(matches!(i.size, 1 | 2 | 4 | 8));
            let regs = if mode == Mode::Bits64 { 16 } else { 8 };
            match i.access {
                Access::Load { dst, dst_size } => {
                    prop_assert!(dst.index < regs && matches!(dst_size, 1 | 2 | 4 | 8));
                }
                Access::Store {
                    src: Operand::Reg(src),
                } => prop_assert!(src.index < regs),
                Access::Store { .. } => {}
            }
            if mode == Mode::Bits32 {
                prop_assert!(i.size <= 4);
            }
            prop_assert_eq!(decode(&bytes[..len], mode), Ok(i));
            for cut in 0..len {
                prop_assert_eq!(
                    decode(&bytes[..cut], mode),
                    Err(DecodeError::Truncated { fetched: cut as u8 })
                );
            }
        }
        Err(DecodeError::Truncated { fetched }) => {
            prop_assert_eq!(usize::from(fetched), bytes.len());
        }
        Err(DecodeError::TooLong | DecodeError::Unsupported) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decode_never_panics_or_overreaches(bytes in any_input(), mode in mode()) {
        check(&bytes, mode)?;
    }

    /// Inputs longer than an instruction: nothing past byte 15 is ever part of one.
    #[test]
    fn nothing_past_fifteen_bytes_counts(
        bytes in prop::collection::vec(any::<u8>(), MAX_LEN..=MAX_LEN + 8),
        mode in mode(),
    ) {
        prop_assert_eq!(decode(&bytes, mode), decode(&bytes[..MAX_LEN], mode));
    }
}
