//! Known encodings, in 64-bit mode and in 32-bit code.

use super::*;
use Mode::{Bits32, Bits64};

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
        decode(&[0x88, 0x07], Bits64),
        Ok(MmioInstruction {
            len: 2,
            size: 1,
            access: Access::Store {
                src: Operand::Reg(reg(0))
            }
        })
    );
    // mov dword [rax+0x18], ecx
    let i = decode(&[0x89, 0x48, 0x18], Bits64).unwrap();
    assert_eq!((i.len, i.size), (3, 4));
    assert_eq!(
        i.access,
        Access::Store {
            src: Operand::Reg(reg(1))
        }
    );
    // mov qword [r8+rcx*8+0x1000], r9 (REX.WRB, SIB, disp32)
    let i = decode(&[0x4d, 0x89, 0x8c, 0xc8, 0x00, 0x10, 0x00, 0x00], Bits64).unwrap();
    assert_eq!((i.len, i.size), (8, 8));
    assert_eq!(
        i.access,
        Access::Store {
            src: Operand::Reg(reg(9))
        }
    );
    // mov word [rbx], dx
    let i = decode(&[0x66, 0x89, 0x13], Bits64).unwrap();
    assert_eq!((i.len, i.size), (3, 2));
}

#[test]
fn byte_registers_without_rex_are_the_high_bytes() {
    // mov [rdi], ah
    let i = decode(&[0x88, 0x27], Bits64).unwrap();
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
    let i = decode(&[0x40, 0x88, 0x27], Bits64).unwrap();
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
    let i = decode(&[0x8b, 0x05, 0x00, 0x01, 0x00, 0x00], Bits64).unwrap();
    assert_eq!((i.len, i.size), (6, 4));
    assert_eq!(
        i.access,
        Access::Load {
            dst: reg(0),
            dst_size: 4
        }
    );
    // movzx ecx, byte [rdx+5]
    let i = decode(&[0x0f, 0xb6, 0x4a, 0x05], Bits64).unwrap();
    assert_eq!((i.len, i.size), (4, 1));
    assert_eq!(
        i.access,
        Access::Load {
            dst: reg(1),
            dst_size: 4
        }
    );
    // movzx r10, word [rax] (REX.WR)
    let i = decode(&[0x4c, 0x0f, 0xb7, 0x10], Bits64).unwrap();
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
    let i = decode(&[0xc6, 0x47, 0x01, 0x41], Bits64).unwrap();
    assert_eq!((i.len, i.size), (4, 1));
    assert_eq!(
        i.access,
        Access::Store {
            src: Operand::Imm(0x41)
        }
    );
    // mov qword [rax], -2
    let i = decode(&[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff], Bits64).unwrap();
    assert_eq!((i.len, i.size), (7, 8));
    assert_eq!(
        i.access,
        Access::Store {
            src: Operand::Imm(u64::MAX - 1)
        }
    );
    // mov word [rax], 0x1234
    let i = decode(&[0x66, 0xc7, 0x00, 0x34, 0x12], Bits64).unwrap();
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
    let unsupported = Err(DecodeError::Unsupported);
    assert_eq!(
        decode(&[0x89, 0xc8], Bits64),
        unsupported,
        "register to register"
    );
    assert_eq!(
        decode(&[0xc7, 0x08, 0, 0, 0, 0], Bits64),
        unsupported,
        "C7 /1 is not MOV"
    );
    assert_eq!(decode(&[0xf3, 0xa4], Bits64), unsupported, "rep movsb");
    assert_eq!(decode(&[0x01, 0x07], Bits64), unsupported, "add");
    assert_eq!(
        decode(&[0x67, 0x89, 0x07], Bits32),
        unsupported,
        "16-bit addressing"
    );
}

#[test]
fn instructions_cut_short_are_truncated_not_read_past() {
    let truncated = |fetched| Err(DecodeError::Truncated { fetched });
    assert_eq!(decode(&[], Bits64), truncated(0));
    assert_eq!(decode(&[0x89], Bits64), truncated(1));
    // mov byte [rax+disp32], imm8 with only the opcode and ModRM fetched: the review's panic.
    assert_eq!(decode(&[0xc6, 0x80], Bits64), truncated(2));
    assert_eq!(decode(&[0xc6, 0x80, 0, 0, 0, 0], Bits64), truncated(6));
    assert_eq!(decode(&[0x89, 0x04], Bits64), truncated(2), "SIB missing");
    assert_eq!(decode(&[0x66, 0x66], Bits32), truncated(2), "prefixes only");
}

#[test]
fn more_than_fifteen_bytes_is_too_long() {
    let mut bytes = [0x66u8; 20];
    bytes[14] = 0x89;
    bytes[15] = 0x07;
    assert_eq!(decode(&bytes, Bits64), Err(DecodeError::TooLong));
    // Exactly fifteen: thirteen prefixes, opcode, ModRM.
    let i = decode(&bytes[1..], Bits64).unwrap();
    assert_eq!((i.len, i.size), (15, 2));
}

#[test]
fn thirty_two_bit_code_has_no_rex() {
    // 0x48 is DEC EAX in 32-bit code, not REX.W: refused rather than taken as a 64-bit MOV.
    assert_eq!(
        decode(&[0x48, 0x89, 0x07], Bits32),
        Err(DecodeError::Unsupported)
    );
    // mov byte [eax], 0x41
    let i = decode(&[0xc6, 0x00, 0x41], Bits32).unwrap();
    assert_eq!((i.len, i.size), (3, 1));
    assert_eq!(
        i.access,
        Access::Store {
            src: Operand::Imm(0x41)
        }
    );
    // mov ax, [ebx+ecx*4+0x10]
    let i = decode(&[0x66, 0x8b, 0x44, 0x8b, 0x10], Bits32).unwrap();
    assert_eq!((i.len, i.size), (5, 2));
    assert_eq!(
        i.access,
        Access::Load {
            dst: reg(0),
            dst_size: 2
        }
    );
    // mov [edi], bh: without REX, register 7 of a byte operation is BH.
    let i = decode(&[0x88, 0x3f], Bits32).unwrap();
    assert_eq!(
        i.access,
        Access::Store {
            src: Operand::Reg(Reg {
                index: 3,
                high_byte: true
            })
        }
    );
}
