//! Decoding the instructions a guest uses on memory-mapped devices.
//!
//! An EPT violation reports the guest-physical address and the direction, but not the access
//! size, the register involved or the instruction's length (SDM Vol. 3C, 29.2.1: the VM-exit
//! instruction-length field is undefined for EPT violations). This crate decodes the `MOV`
//! family in 64-bit mode, which is what drivers use for MMIO; anything else is refused and the
//! partition is stopped with a report instead of being emulated wrongly.
#![cfg_attr(not(test), no_std)]

/// The longest x86 instruction.
pub const MAX_LEN: usize = 15;

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
    /// Bytes the instruction occupies.
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

/// Length of the ModRM memory operand (ModRM, SIB, displacement) starting at `bytes[0]`, or
/// `None` for a register operand.
fn memory_operand_len(bytes: &[u8]) -> Option<usize> {
    let modrm = *bytes.first()?;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return None;
    }
    let mut len = 1;
    if rm == 4 {
        let sib = *bytes.get(1)?;
        len += 1;
        if md == 0 && sib & 7 == 5 {
            len += 4;
        }
    }
    len += match (md, rm) {
        (0, 5) => 4,
        (1, _) => 1,
        (2, _) => 4,
        _ => 0,
    };
    Some(len)
}

fn immediate(bytes: &[u8], size: usize) -> Option<u64> {
    let b = bytes.get(..size)?;
    Some(match size {
        1 => u64::from(b[0]),
        2 => u64::from(u16::from_le_bytes([b[0], b[1]])),
        _ => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    })
}

/// Decodes the 64-bit-mode instruction at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Option<MmioInstruction> {
    let mut i = 0;
    let mut operand16 = false;
    loop {
        match *bytes.get(i)? {
            0x66 => operand16 = true,
            // Segment overrides: CS, SS, DS, ES are ignored in 64-bit mode; FS and GS bases are 0
            // for the accesses that reach here only if the guest set them so, and the EPT
            // violation already names the final address.
            0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            _ => break,
        }
        i += 1;
    }
    let rex: Rex = match *bytes.get(i)? {
        b @ 0x40..=0x4f => {
            i += 1;
            Some(b & 0x0f)
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
    let opcode = *bytes.get(i)?;
    i += 1;
    let (size, kind) = match opcode {
        0x88 => (1, Kind::StoreReg),
        0x89 => (word, Kind::StoreReg),
        0x8a => (1, Kind::Load { dst_size: 1 }),
        0x8b => (word, Kind::Load { dst_size: word }),
        0xc6 => (1, Kind::StoreImm),
        0xc7 => (word, Kind::StoreImm),
        0x0f => {
            let second = *bytes.get(i)?;
            i += 1;
            match second {
                0xb6 => (1, Kind::Load { dst_size: word }),
                0xb7 => (2, Kind::Load { dst_size: word }),
                _ => return None,
            }
        }
        _ => return None,
    };
    let modrm = *bytes.get(i)?;
    let reg_field = (modrm >> 3) & 7;
    i += memory_operand_len(&bytes[i..])?;
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
                return None;
            }
            // A 64-bit store takes a sign-extended 32-bit immediate.
            let imm_size = usize::from(size.min(4));
            let raw = immediate(&bytes[i..], imm_size)?;
            i += imm_size;
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
    (i <= MAX_LEN).then_some(MmioInstruction {
        len: i as u8,
        size,
        access,
    })
}

enum Kind {
    StoreReg,
    StoreImm,
    Load { dst_size: u8 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(index: u8) -> Reg {
        Reg {
            index,
            high_byte: false,
        }
    }

    #[test]
    fn stores_from_registers() {
        // mov [rdi], al
        assert_eq!(
            decode(&[0x88, 0x07]),
            Some(MmioInstruction {
                len: 2,
                size: 1,
                access: Access::Store {
                    src: Operand::Reg(reg(0))
                }
            })
        );
        // mov dword [rax+0x18], ecx
        let i = decode(&[0x89, 0x48, 0x18]).unwrap();
        assert_eq!((i.len, i.size), (3, 4));
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Reg(reg(1))
            }
        );
        // mov qword [r8+rcx*8+0x1000], r9 (REX.WRB, SIB, disp32)
        let i = decode(&[0x4d, 0x89, 0x8c, 0xc8, 0x00, 0x10, 0x00, 0x00]).unwrap();
        assert_eq!((i.len, i.size), (8, 8));
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Reg(reg(9))
            }
        );
        // mov word [rbx], dx
        let i = decode(&[0x66, 0x89, 0x13]).unwrap();
        assert_eq!((i.len, i.size), (3, 2));
    }

    #[test]
    fn byte_registers_without_rex_are_the_high_bytes() {
        // mov [rdi], ah
        let i = decode(&[0x88, 0x27]).unwrap();
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Reg(Reg {
                    index: 0,
                    high_byte: true
                })
            }
        );
        // mov [rdi], spl (REX present: register 4 is SPL, not AH)
        let i = decode(&[0x40, 0x88, 0x27]).unwrap();
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Reg(reg(4))
            }
        );
    }

    #[test]
    fn loads_and_zero_extending_loads() {
        // mov eax, [rip+0x100]
        let i = decode(&[0x8b, 0x05, 0x00, 0x01, 0x00, 0x00]).unwrap();
        assert_eq!((i.len, i.size), (6, 4));
        assert_eq!(
            i.access,
            Access::Load {
                dst: reg(0),
                dst_size: 4
            }
        );
        // movzx ecx, byte [rdx+5]
        let i = decode(&[0x0f, 0xb6, 0x4a, 0x05]).unwrap();
        assert_eq!((i.len, i.size), (4, 1));
        assert_eq!(
            i.access,
            Access::Load {
                dst: reg(1),
                dst_size: 4
            }
        );
        // movzx r10, word [rax] (REX.WR)
        let i = decode(&[0x4c, 0x0f, 0xb7, 0x10]).unwrap();
        assert_eq!((i.len, i.size), (4, 2));
        assert_eq!(
            i.access,
            Access::Load {
                dst: reg(10),
                dst_size: 8
            }
        );
    }

    #[test]
    fn immediates_are_read_and_sign_extended_for_64_bit_stores() {
        // mov byte [rdi+1], 0x41
        let i = decode(&[0xc6, 0x47, 0x01, 0x41]).unwrap();
        assert_eq!((i.len, i.size), (4, 1));
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Imm(0x41)
            }
        );
        // mov qword [rax], -2
        let i = decode(&[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!((i.len, i.size), (7, 8));
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Imm(u64::MAX - 1)
            }
        );
        // mov word [rax], 0x1234
        let i = decode(&[0x66, 0xc7, 0x00, 0x34, 0x12]).unwrap();
        assert_eq!((i.len, i.size), (5, 2));
        assert_eq!(
            i.access,
            Access::Store {
                src: Operand::Imm(0x1234)
            }
        );
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(decode(&[0x89, 0xc8]), None, "register to register");
        assert_eq!(decode(&[0xc7, 0x08, 0, 0, 0, 0]), None, "C7 /1 is not MOV");
        assert_eq!(decode(&[0xf3, 0xa4]), None, "rep movsb");
        assert_eq!(decode(&[0x01, 0x07]), None, "add");
        assert_eq!(decode(&[0x89]), None, "truncated");
        assert_eq!(decode(&[]), None);
    }
}
