// Does QEMU trap a guest's WFE to EL2 when HCR_EL2.TWE asks it to (Arm ARM D19.2.49)? (The
// README's note that WFE cannot give a spinning FT guest an exit on aarch64 rests on this probe.)
//
// Bare metal, QEMU 7.2 `virt`: EL2 sets HCR_EL2.RW, TWE and TWI and enters EL1, which executes
// INSN and then HVC #0. The first exception taken to EL2 prints its class through semihosting,
// as a letter: 'A' + ESR_EL2.EC, so 'B' is a trapped WFx (EC 0x01) and 'W' the HVC (EC 0x16).
// Run it with INSN each of wfe, wfi and nop:
//
//   sed s/INSN/wfe/ tests/probes/wfe-trap.S > probe.S
//   llvm-mc -triple=aarch64 -filetype=obj probe.S -o probe.o
//   "$(rustc --print sysroot)"/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld -flavor gnu \
//     -Ttext=0x40200000 -e _start probe.o -o probe.elf
//   qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -m 256 -display none \
//     -serial none -icount shift=0,sleep=off -semihosting -kernel probe.elf
//
// Measured (QEMU 7.2.22): wfi prints B, wfe and nop print W. QEMU executes WFE as a yield and
// never traps it (target/arm/op_helper.c, HELPER(wfe)).

    .text
    .globl _start
_start:
    ldr     x0, =0x40100000
    mov     sp, x0
    adr     x0, vectors
    msr     vbar_el2, x0
    ldr     x0, =((1 << 31) | (1 << 14) | (1 << 13))   // HCR_EL2.RW, TWE, TWI
    msr     hcr_el2, x0
    mov     x0, #0x3c5
    msr     spsr_el2, x0
    adr     x0, el1
    msr     elr_el2, x0
    isb
    eret
el1:
    INSN
    hvc     #0
1:  b 1b

    .balign 0x800
vectors:
    .skip 0x400                     // from EL2 itself: never taken
lower_sync:                         // synchronous, from a lower EL in AArch64
    mrs     x0, esr_el2
    lsr     x0, x0, #26
    adr     x1, text
    add     x0, x0, #'A'            // EC 0x01 -> 'B', EC 0x16 -> 'W'
    strb    w0, [x1]
    mov     w0, #'\n'
    strb    w0, [x1, #1]
    strb    wzr, [x1, #2]
    mov     w0, #0x04
    hlt     #0xf000
    adr     x1, exit_block
    mov     w0, #0x18
    hlt     #0xf000
    .data
    .align 3
exit_block: .quad 0x20026, 0
text: .space 8
