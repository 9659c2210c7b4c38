//! A scripted vCPU and an in-memory platform for host tests of the exit loop.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::config::{self, GuestUart, Image, ImageSource, MemoryRegion, PortMode, PortRange};
use crate::console_out::ConsoleOut;
use crate::exit::Exit;
use crate::platform::Platform;
use crate::power::PowerStatus;
use crate::record::VcpuRecord;
use crate::report::{Notice, StopReason};
use crate::runtime::VcpuRuntime;
use crate::vcpu::{Completion, EntryError, NoSuchRegister, Vcpu};

/// Replays a list of exits, recording what the core does with them.
pub struct ScriptedVcpu {
    pub exits: VecDeque<Exit>,
    pub completions: Vec<Completion>,
    pub delivered: Vec<u8>,
    pub pending: Option<u8>,
    pub interrupts_on: bool,
    pub deadline: Option<u64>,
    /// When the guest's own timer would fire ([`Vcpu::wake_deadline`]).
    pub wake: Option<u64>,
    pub pc: u64,
    pub regs: [u64; 16],
}

impl ScriptedVcpu {
    pub fn new(exits: impl IntoIterator<Item = Exit>) -> Self {
        Self {
            exits: exits.into_iter().collect(),
            completions: Vec::new(),
            delivered: Vec::new(),
            pending: None,
            interrupts_on: true,
            deadline: None,
            wake: None,
            pc: 0x10_0000,
            regs: [0; 16],
        }
    }
}

impl Vcpu for ScriptedVcpu {
    const GPRS: usize = 16;

    fn run(&mut self) -> Result<Exit, EntryError> {
        if let Some(v) = self.pending.take() {
            self.delivered.push(v);
        }
        self.exits
            .pop_front()
            .ok_or(EntryError::InstructionFailed { error: 0 })
    }
    fn complete(&mut self, completion: Completion) {
        self.completions.push(completion);
        self.pc += 1;
    }
    fn raise_interrupt(&mut self, vector: u8) {
        self.pending = Some(vector);
    }
    fn interrupt_pending(&self) -> bool {
        self.pending.is_some()
    }
    fn accepts_interrupts(&self) -> bool {
        self.interrupts_on
    }
    fn set_timer_deadline(&mut self, deadline_ns: Option<u64>) {
        self.deadline = deadline_ns;
    }
    fn pc(&self) -> u64 {
        self.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }
    fn gpr(&self, index: usize) -> Option<u64> {
        self.regs.get(index).copied()
    }
    fn set_gpr(&mut self, index: usize, value: u64) -> Result<(), NoSuchRegister> {
        let reg = self.regs.get_mut(index).ok_or(NoSuchRegister { index })?;
        *reg = value;
        Ok(())
    }
    fn wake_deadline(&self) -> Option<u64> {
        self.wake
    }
}

/// A platform whose clock only moves when the core waits, and whose guest memory is a vector.
pub struct FakePlatform {
    pub now: Cell<u64>,
    pub lines: RefCell<Vec<(String, String)>>,
    pub notices: RefCell<Vec<Notice>>,
    pub memory: RefCell<Vec<u8>>,
    pub uart_mmio: Option<GuestUart>,
    /// vCPUs started through [`Platform::start_vcpu`]: (partition, vCPU, entry, context).
    pub started: RefCell<Vec<(u32, u32, u64, u64)>>,
    /// What arrives on the machine's console line.
    pub input: RefCell<VecDeque<u8>>,
    /// When a sibling vCPU stops the partition ([`Platform::partition_stopping`]).
    pub stops_at: Option<u64>,
    /// SGIs sent through [`Platform::send_sgi`]: (vCPU, INTID).
    pub sgis_sent: RefCell<Vec<(u32, u8)>>,
    /// SGIs a sibling sends this vCPU while it waits for one ([`Platform::wait_for_sibling`]).
    pub sgis_while_waiting: Cell<u16>,
    sgis_pending: Cell<u16>,
    /// Whether partial lines are shown ([`Platform::console_partial`]).
    pub partial: bool,
    /// The machine's console as printed, through a [`ConsoleOut`].
    pub console: RefCell<Vec<u8>>,
    console_out: RefCell<ConsoleOut>,
}

impl FakePlatform {
    pub fn new(memory_size: usize) -> Self {
        Self {
            now: Cell::new(1_000),
            lines: RefCell::new(Vec::new()),
            notices: RefCell::new(Vec::new()),
            memory: RefCell::new(vec![0; memory_size]),
            uart_mmio: None,
            started: RefCell::new(Vec::new()),
            input: RefCell::new(VecDeque::new()),
            stops_at: None,
            sgis_sent: RefCell::new(Vec::new()),
            sgis_while_waiting: Cell::new(0),
            sgis_pending: Cell::new(0),
            partial: false,
            console: RefCell::new(Vec::new()),
            console_out: RefCell::new(ConsoleOut::new()),
        }
    }
}

impl Platform for FakePlatform {
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
    fn wait_until_ns(&self, deadline_ns: u64) {
        self.now.set(self.now.get().max(deadline_ns));
    }
    /// A sibling's stop is a kick: it ends the wait then.
    fn idle_until_ns(&self, deadline_ns: u64) {
        let kick = self.stops_at.unwrap_or(u64::MAX);
        self.now.set(self.now.get().max(deadline_ns.min(kick)));
    }
    fn partition_stopping(&self) -> bool {
        self.stops_at.is_some_and(|at| self.now.get() >= at)
    }
    fn send_sgi(&self, vcpu: u32, intid: u8) {
        self.sgis_sent.borrow_mut().push((vcpu, intid));
    }
    fn take_sgis(&self) -> u16 {
        self.sgis_pending.take()
    }
    /// A sibling exists while it still has SGIs to send.
    fn wait_for_sibling(&self) -> bool {
        let sgis = self.sgis_while_waiting.take();
        self.sgis_pending.set(sgis);
        sgis != 0
    }
    fn console_input_wanted(&self) -> bool {
        !self.input.borrow().is_empty()
    }
    fn console_input(&self, buf: &mut [u8]) -> usize {
        let mut input = self.input.borrow_mut();
        let n = buf.len().min(input.len());
        for (to, from) in buf.iter_mut().zip(input.drain(..n)) {
            *to = from;
        }
        n
    }
    fn console_partial(&self, partition: &str, bytes: &[u8]) -> bool {
        if self.partial {
            let mut console = self.console.borrow_mut();
            self.console_out
                .borrow_mut()
                .partition(partition, bytes, false, |p| console.extend_from_slice(p));
        }
        self.partial
    }
    fn console_line(&self, partition: &str, line: &[u8]) {
        let mut console = self.console.borrow_mut();
        self.console_out
            .borrow_mut()
            .partition(partition, line, true, |p| console.extend_from_slice(p));
        self.lines.borrow_mut().push((
            partition.to_string(),
            String::from_utf8_lossy(line).into_owned(),
        ));
    }
    fn notice(&self, _partition: &str, notice: Notice) {
        self.notices.borrow_mut().push(notice);
    }
    fn read_guest(&self, _region: &MemoryRegion, offset: u64, buf: &mut [u8]) {
        let o = offset as usize;
        buf.copy_from_slice(&self.memory.borrow()[o..o + buf.len()]);
    }
    fn write_guest(&self, _region: &MemoryRegion, offset: u64, data: &[u8]) {
        let o = offset as usize;
        self.memory.borrow_mut()[o..o + data.len()].copy_from_slice(data);
    }
    fn uart_mmio(&self) -> Option<GuestUart> {
        self.uart_mmio
    }
    fn start_vcpu(&self, partition: u32, vcpu: u32, entry: u64, context: u64) -> PowerStatus {
        self.started
            .borrow_mut()
            .push((partition, vcpu, entry, context));
        PowerStatus::Success
    }
}

pub const MEMORY: u64 = 0x20_0000;

/// A partition with one 2 MiB region at GPA 0 and an ignored port range 0x80..0x84.
pub fn partition() -> config::Partition {
    let mut p = config::Partition {
        name: "guest".try_into().unwrap(),
        cpus: heapless::Vec::from_slice(&[0]).unwrap(),
        memory: heapless::Vec::new(),
        image: Image {
            source: ImageSource::Bundle { index: 0 },
            load: GuestPhysAddr::new(0x10_0000),
            entry: GuestPhysAddr::new(0x10_0000),
            size: 0x1000,
        },
        ports: heapless::Vec::new(),
        args: "mode=test".try_into().unwrap(),
        kernel: None,
        ft: None,
        console_input: false,
        unbacked: config::Unbacked::Stop,
        pmu: false,
    };
    p.memory
        .push(MemoryRegion {
            gpa: GuestPhysAddr::new(0),
            hpa: HostPhysAddr::new(0x100_0000),
            size: MEMORY,
            executable: true,
        })
        .unwrap();
    p.ports
        .push(PortRange {
            base: 0x80,
            count: 4,
            mode: PortMode::Ignore,
        })
        .unwrap();
    p
}

/// Runs `exits` on a fresh vCPU of [`partition`]; the script ends in an entry failure unless it
/// stops earlier.
pub fn run(
    exits: impl IntoIterator<Item = Exit>,
    platform: &FakePlatform,
) -> (StopReason, ScriptedVcpu, VcpuRecord) {
    run_on(&partition(), ScriptedVcpu::new(exits), platform)
}

/// Runs `vcpu` as vCPU 0 of `part`.
pub fn run_on(
    part: &config::Partition,
    mut vcpu: ScriptedVcpu,
    platform: &FakePlatform,
) -> (StopReason, ScriptedVcpu, VcpuRecord) {
    let mut record = VcpuRecord::new(platform.now_ns());
    let stop = VcpuRuntime {
        partition: part,
        id: 3,
        vcpu: 0,
        record: &mut record,
        platform,
        replica: &mut crate::replica::Solo,
        exit_at: crate::point::ExecPoint::default(),
        journal: None,
    }
    .run(&mut vcpu);
    (stop, vcpu, record)
}

/// A valid two-partition x86_64 system on a 256 MiB board.
/// The FT settings of copy `role` of pair 0, whose other copy is partition `peer`.
pub fn ft(role: config::FtRole, peer: u8) -> config::Ft {
    config::Ft {
        role,
        peer,
        pair: 0,
        link: config::FtLink::Ring,
        heartbeat_us: 500,
        suspect_after: 10,
        delivery: config::FtDelivery::Exit,
    }
}

pub fn system() -> config::System {
    use crate::config::*;
    let board = Board {
        name: "test-board".try_into().unwrap(),
        arch: Arch::X86_64,
        cpus: 2,
        ram: PhysRange {
            base: HostPhysAddr::new(0),
            size: 256 << 20,
        },
        hypervisor: PhysRange {
            base: HostPhysAddr::new(0x10_0000),
            size: 15 << 20,
        },
        timer_hz: Some(4_000_000),
        console: Uart::Pio16550 { port: 0x3f8 },
        log: Uart::Pio16550 { port: 0x2f8 },
        exit: ExitDevice::Bochs,
        gic: None,
        guest_uart: None,
        images: None,
        instruction_counter: InstructionCounter::None,
        nic: None,
    };
    let mut a = partition();
    a.name = "a".try_into().unwrap();
    let mut b = partition();
    b.name = "b".try_into().unwrap();
    b.cpus[0] = 1;
    b.image.source = ImageSource::Bundle { index: 1 };
    b.memory[0].hpa = HostPhysAddr::new(0x200_0000);
    let mut partitions = heapless::Vec::new();
    partitions.push(a).unwrap();
    partitions.push(b).unwrap();
    System {
        version: FORMAT_VERSION,
        board,
        partitions,
    }
}

/// The sample system moved to an aarch64 board shaped like QEMU `virt`.
pub fn aarch64_system() -> config::System {
    use crate::config::*;
    let mut sys = system();
    let b = &mut sys.board;
    b.arch = Arch::Aarch64;
    b.ram.base = HostPhysAddr::new(0x4000_0000);
    b.hypervisor.base = HostPhysAddr::new(0x4020_0000);
    b.console = Uart::Pl011 {
        base: HostPhysAddr::new(0x0900_0000),
    };
    b.log = Uart::Semihosting;
    b.exit = ExitDevice::Semihosting;
    b.gic = Some(Gic {
        distributor: HostPhysAddr::new(0x0800_0000),
        cpu: GicCpu::V3 {
            redistributors: HostPhysAddr::new(0x080a_0000),
            redistributor_stride: 0x2_0000,
        },
        maintenance_intid: 25,
        hyp_timer_intid: 26,
        virtual_timer_intid: 27,
        physical_timer_intid: 30,
        secure_timer_intid: 29,
        pmu_intid: Some(23),
    });
    b.guest_uart = Some(GuestUart {
        base: GuestPhysAddr::new(0x0900_0000),
        intid: 33,
    });
    for (k, p) in sys.partitions.iter_mut().enumerate() {
        p.ports.clear();
        p.memory[0].gpa = GuestPhysAddr::new(0x4000_0000);
        p.memory[0].hpa = HostPhysAddr::new(0x4200_0000 + k as u64 * 0x40_0000);
        p.image.load = GuestPhysAddr::new(0x4010_0000);
        p.image.entry = p.image.load;
    }
    sys
}
