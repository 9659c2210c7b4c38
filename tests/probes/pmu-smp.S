// Does QEMU's PMU count one CPU's instructions when another CPU runs too? (The board fact
// `instruction_counter = "machine-wide"` of the aarch64 QEMU boards rests on this probe.)
//
// Bare metal at EL2, QEMU 7.2 `virt`, `-smp 2 -icount shift=0,sleep=off`. CPU 1 (started with
// PSCI CPU_ON when BUSY = 1) spins; CPU 0 counts, at EL2 only (NSH = 1; Arm ARM, PMCCFILTR_EL0
// and PMEVTYPER<n>_EL0), a 10,000-iteration loop (20,002 instructions with the two reads) 20,000
// times with PMCCNTR_EL0 and with PMEVCNTR0_EL0 on INST_RETIRED (0x08), and prints through
// semihosting the smallest and largest count of each. Run it with:
//
//   llvm-mc -triple=aarch64 -filetype=obj -defsym BUSY=1 tests/probes/pmu-smp.S -o pmu.o
//   "$(rustc --print sysroot)"/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld -flavor gnu \
//     -Ttext=0x40200000 -e _start pmu.o -o pmu.elf
//   qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 256 \
//     -display none -serial none -icount shift=0,sleep=off -semihosting -kernel pmu.elf
//
// Measured (QEMU 7.2.22): with BUSY = 0 every count is 20,002 (0x4e22); with BUSY = 1 the
// smallest is 20,002 and the largest 99,995,426 (0x5f62f22) for both counters: QEMU's single
// round-robin loop ran CPU 1 for one 100 ms slice while CPU 0 stood at a counted level, and both
// counters follow the machine's virtual time (icount), not the CPU's own instructions.

    .text
    .globl _start
_start:
    mrs     x0, mpidr_el1
    and     x0, x0, #0xff
    cbnz    x0, busy
    ldr     x0, =0x40100000
    mov     sp, x0
    mov     x0, #BUSY
    cbz     x0, 2f
    ldr     x0, =0xc4000003         // PSCI CPU_ON (SMC64): CPU 1 at `busy`
    mov     x1, #1
    adr     x2, busy
    mov     x3, #0
    smc     #0
    ldr     x8, =started            // wait (WFE lets QEMU run CPU 1) until CPU 1 runs
1:  wfe
    ldr     x9, [x8]
    cbz     x9, 1b
2:  mov     x0, #(1 << 27)          // count at EL2 (NSH)
    msr     pmccfiltr_el0, x0
    orr     x0, x0, #0x08           // INST_RETIRED
    msr     pmevtyper0_el0, x0
    mov     x0, #((1 << 6) | 1)     // PMCR_EL0.LC, E
    msr     pmcr_el0, x0
    ldr     x0, =0x80000001         // PMCCNTR and PMEVCNTR0
    msr     pmcntenset_el0, x0
    isb
    bl      cycles
    bl      instructions
    adr     x1, exit_block
    mov     w0, #0x18               // SYS_EXIT
    hlt     #0xf000

// Prints the smallest and largest PMCCNTR_EL0 count of the loop.
cycles:
    mov     x19, x30
    mov     x20, #20000
    mov     x21, #-1
    mov     x22, #0
3:  isb
    mrs     x10, pmccntr_el0
    ldr     x9, =10000
4:  subs    x9, x9, #1
    b.ne    4b
    mrs     x11, pmccntr_el0
    bl      minmax
    b.ne    3b
    b       report

// Prints the smallest and largest PMEVCNTR0_EL0 (INST_RETIRED) count of the loop.
instructions:
    mov     x19, x30
    mov     x20, #20000
    mov     x21, #-1
    mov     x22, #0
5:  isb
    mrs     x10, pmevcntr0_el0
    ldr     x9, =10000
6:  subs    x9, x9, #1
    b.ne    6b
    mrs     x11, pmevcntr0_el0
    bl      minmax
    b.ne    5b
    b       report

// x21 = min, x22 = max of x11 - x10 (32 bits: PMEVCNTR0 is a 32-bit counter); counts x20 down,
// Z set at 0.
minmax:
    sub     x12, x11, x10
    and     x12, x12, #0xffffffff
    cmp     x12, x21
    csel    x21, x12, x21, lo
    cmp     x12, x22
    csel    x22, x12, x22, hi
    subs    x20, x20, #1
    ret

report:
    mov     x0, x21
    bl      puthex
    mov     x0, x22
    bl      puthex
    ret     x19

// Prints x0 as 16 hex digits and a newline (semihosting SYS_WRITE0).
puthex:
    adr     x1, text
    mov     x2, #60
7:  lsr     x3, x0, x2
    and     x3, x3, #0xf
    cmp     x3, #10
    add     x4, x3, #'0'
    add     x5, x3, #('a' - 10)
    csel    x3, x4, x5, lo
    strb    w3, [x1], #1
    subs    x2, x2, #4
    b.pl    7b
    mov     w3, #'\n'
    strb    w3, [x1], #1
    strb    wzr, [x1]
    adr     x1, text
    mov     w0, #0x04               // SYS_WRITE0
    hlt     #0xf000
    ret

busy:
    ldr     x8, =started
    mov     x9, #1
    str     x9, [x8]
    sev
8:  add     x5, x5, #1
    b       8b

    .data
    .align 3
exit_block: .quad 0x20026, 0        // ADP_Stopped_ApplicationExit, status 0
started:    .quad 0
text:       .space 32
