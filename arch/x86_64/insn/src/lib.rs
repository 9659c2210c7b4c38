//! Decoding the instructions a guest uses on memory-mapped devices.
//!
//! An EPT violation reports the guest-physical address and the direction, but not the access
//! size, the register involved or the instruction's length (SDM Vol. 3C, 29.2.1: the VM-exit
//! instruction-length field is undefined for EPT violations). This crate decodes the `MOV`
//! family in 64-bit mode and in 32-bit code (compatibility or protected mode), which is what
//! drivers use for MMIO; anything else is refused and the partition is stopped with a report
//! instead of being emulated wrongly.
//!
//! The bytes come from guest memory the guest controls, and may be fewer than the instruction
//! needs (the fetch stopped at a page it could not translate). Every byte is read through
//! [`Cursor`], which checks it against what was fetched, so no input can make `decode` panic.
#![cfg_attr(not(test), no_std)]

mod cursor;

use cursor::Cursor;

/// The longest x86 instruction (SDM Vol. 2A, 2.3.11).
pub const MAX_LEN: usize = 15;

/// The kind of code the guest was running, from its CS and IA32_EFER.LMA (SDM Vol. 3A, 5.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 64-bit mode (IA-32e with CS.L = 1): REX prefixes, 16 registers.
    Bits64,
    /// 32-bit code (CS.D = 1, CS.L = 0): compatibility mode or protected mode; 0x40-0x4F are
    /// INC/DEC, not REX, and only eight registers exist.
    Bits32,
}

/// Why `decode` gave no instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The instruction goes on past the `fetched` bytes that could be read.
    Truncated { fetched: u8 },
    /// Longer than [`MAX_LEN`]: the CPU would have raised #GP, not accessed memory.
    TooLong,
    /// Not an instruction the device path emulates.
    Unsupported,
}

/// A general register as encoded: index 0-15 (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15),
/// or one of AH, CH, DH, BH (`high_byte`, index 0-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg {
    pub index: u8,
    pub high_byte: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    Reg(Reg),
    Imm(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The value read, zero-extended, goes to `dst` with width `dst_size` bytes.
    Load { dst: Reg, dst_size: u8 },
    /// `src`, truncated to the access size, is written.
    Store { src: Operand },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInstruction {
    /// Bytes the instruction occupies, at most [`MAX_LEN`] and at most the bytes given.
    pub len: u8,
    /// Bytes the memory access moves: 1, 2, 4 or 8.
    pub size: u8,
    pub access: Access,
}

const REX_W: u8 = 0b1000;
const REX_R: u8 = 0b0100;

/// A REX prefix's low nibble, or `None` without one.
type Rex = Option<u8>;

fn register(field: u8, rex: Rex, size: u8) -> Reg {
    let index = field | if rex.unwrap_or(0) & REX_R != 0 { 8 } else { 0 };
    // Without REX, byte registers 4-7 are AH, CH, DH, BH (SDM Vol. 2A, 3.1.1.1).
    if size == 1 && rex.is_none() && (4..8).contains(&index) {
        Reg {
            index: index - 4,
            high_byte: true,
        }
    } else {
        Reg {
            index,
            high_byte: false,
        }
    }
}

/// Skips the ModRM memory operand's SIB and displacement (SDM Vol. 2A, 2.1.5, Tables 2-2 and
/// 2-3: 32- and 64-bit addressing have the same lengths); a register operand is refused.
fn skip_memory_operand(c: &mut Cursor, modrm: u8) -> Result<(), DecodeError> {
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return Err(DecodeError::Unsupported);
    }
    let mut disp = match (md, rm) {
        (0, 5) | (2, _) => 4,
        (1, _) => 1,
        _ => 0,
    };
    if rm == 4 {
        let sib = c.byte()?;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    }
    c.skip(disp)
}

enum Kind {
    StoreReg,
    StoreImm,
    Load { dst_size: u8 },
}

/// Decodes the instruction at the start of `bytes`, as the CPU would in `mode`.
pub fn decode(bytes: &[u8], mode: Mode) -> Result<MmioInstruction, DecodeError> {
    let mut c = Cursor::new(bytes);
    let mut operand16 = false;
    let mut byte = c.byte()?;
    loop {
        match byte {
            0x66 => operand16 = true,
            // Segment overrides change the linear address, which the EPT violation already
            // resolved to the guest-physical one; they do not change the instruction.
            0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            _ => break,
        }
        byte = c.byte()?;
    }
    let rex: Rex = match (mode, byte) {
        (Mode::Bits64, 0x40..=0x4f) => {
            let rex = byte & 0x0f;
            byte = c.byte()?;
            Some(rex)
        }
        _ => None,
    };
    let word = if rex.unwrap_or(0) & REX_W != 0 {
        8
    } else if operand16 {
        2
    } else {
        4
    };
    let (size, kind) = match byte {
        0x88 => (1, Kind::StoreReg),
        0x89 => (word, Kind::StoreReg),
        0x8a => (1, Kind::Load { dst_size: 1 }),
        0x8b => (word, Kind::Load { dst_size: word }),
        0xc6 => (1, Kind::StoreImm),
        0xc7 => (word, Kind::StoreImm),
        0x0f => match c.byte()? {
            0xb6 => (1, Kind::Load { dst_size: word }),
            0xb7 => (2, Kind::Load { dst_size: word }),
            _ => return Err(DecodeError::Unsupported),
        },
        _ => return Err(DecodeError::Unsupported),
    };
    let modrm = c.byte()?;
    let reg_field = (modrm >> 3) & 7;
    skip_memory_operand(&mut c, modrm)?;
    let access = match kind {
        Kind::StoreReg => Access::Store {
            src: Operand::Reg(register(reg_field, rex, size)),
        },
        Kind::Load { dst_size } => Access::Load {
            dst: register(reg_field, rex, dst_size),
            dst_size,
        },
        Kind::StoreImm => {
            // C6 /0 and C7 /0 are MOV; other /digits are not (SDM Vol. 2B, MOV).
            if reg_field != 0 {
                return Err(DecodeError::Unsupported);
            }
            // A 64-bit store takes a sign-extended 32-bit immediate.
            let raw = c.immediate(size.min(4))?;
            let value = if size == 8 {
                raw as u32 as i32 as i64 as u64
            } else {
                raw
            };
            Access::Store {
                src: Operand::Imm(value),
            }
        }
    };
    Ok(MmioInstruction {
        len: c.consumed(),
        size,
        access,
    })
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
