//! The exit loop through a recording [`Replica`]: what a fault-tolerant copy sees, and when.

use std::vec::Vec;

use crate::exit::Exit;
use crate::fake::{FakePlatform, ScriptedVcpu, partition};
use crate::hypercall::Call;
use crate::point::ExecPoint;
use crate::record::VcpuRecord;
use crate::replica::{Gate, Hold, Outlet, Replica};
use crate::report::StopReason;
use crate::runtime::VcpuRuntime;
use crate::vcpu::Completion;

/// Logs like a primary: every time read, interrupt, console input and line with its point. `full` refuses
/// outputs; `refuse_interrupts` refuses that many interrupts (a full log).
#[derive(Default)]
struct Recorder {
    times: Vec<(ExecPoint, u64)>,
    interrupts: Vec<(ExecPoint, u8)>,
    lines: Vec<(ExecPoint, Vec<u8>)>,
    inputs: Vec<(ExecPoint, Vec<u8>)>,
    full: bool,
    refuse_interrupts: u32,
    stopped_at: Option<ExecPoint>,
}

impl Replica for Recorder {
    fn logs(&self) -> bool {
        true
    }
    fn replays(&self) -> bool {
        false
    }
    fn poll(&mut self, _: u64, _: ExecPoint, _: &mut dyn Outlet) -> Gate {
        Gate::Run
    }
    fn service(&mut self, _: u64, _: &mut dyn Outlet) -> Result<bool, StopReason> {
        Ok(false)
    }
    fn guest_stopped(&mut self, at: ExecPoint) {
        self.stopped_at = Some(at);
    }
    fn time_read(&mut self, at: ExecPoint, now_ns: u64) -> Result<u64, Hold> {
        self.times.push((at, now_ns));
        Ok(now_ns)
    }
    fn interrupt(&mut self, at: ExecPoint, vector: u8) -> Result<(), Hold> {
        if self.refuse_interrupts > 0 {
            self.refuse_interrupts -= 1;
            return Err(Hold);
        }
        self.interrupts.push((at, vector));
        Ok(())
    }
    fn input(&mut self, at: ExecPoint, bytes: &[u8]) -> Result<(), Hold> {
        self.inputs.push((at, bytes.to_vec()));
        Ok(())
    }
    fn output_ready(&self, _: usize) -> bool {
        !self.full
    }
    fn output(&mut self, at: ExecPoint, line: &[u8], _: &dyn Fn() -> u64, _: &mut dyn Outlet) {
        self.lines.push((at, line.to_vec()));
    }
}

fn run_with(
    exits: Vec<Exit>,
    replica: &mut Recorder,
    p: &FakePlatform,
) -> (StopReason, VcpuRecord, ScriptedVcpu) {
    let part = partition();
    let mut record = VcpuRecord::new(p.now.get());
    let mut vcpu = ScriptedVcpu::new(exits);
    let stop = VcpuRuntime {
        partition: &part,
        id: 0,
        vcpu: 0,
        record: &mut record,
        platform: p,
        replica,
        exit_at: ExecPoint::default(),
        journal: None,
    }
    .run(&mut vcpu);
    (stop, record, vcpu)
}

#[test]
fn console_input_is_logged_at_a_boundary_before_the_guest_can_read_it() {
    let p = FakePlatform::new(0);
    p.input.borrow_mut().extend(b"hi");
    let part = partition();
    let mut record = VcpuRecord::new(p.now.get());
    let read = |port| Exit::PortRead { port, size: 1 };
    let exits = [read(0x3fd), read(0x3f8), read(0x3f8), read(0x3fd)];
    let mut vcpu = ScriptedVcpu::new(exits);
    let mut r = Recorder::default();
    VcpuRuntime {
        partition: &part,
        id: 0,
        vcpu: 0,
        record: &mut record,
        platform: &p,
        replica: &mut r,
        exit_at: ExecPoint::default(),
        journal: None,
    }
    .run(&mut vcpu);
    assert_eq!(r.inputs.len(), 1, "one chunk, logged once");
    assert_eq!(
        r.inputs[0].0.det_exits, 0,
        "at the first boundary, before any read"
    );
    assert_eq!(r.inputs[0].1, b"hi");
    let values: Vec<_> = vcpu
        .completions
        .iter()
        .map(|c| match c {
            Completion::Value(v) => *v,
            _ => u64::MAX,
        })
        .collect();
    assert_eq!(values, [0x61, u64::from(b'h'), u64::from(b'i'), 0x60]);
}

fn hc(call: Call, args: [u64; 4]) -> Exit {
    Exit::Hypercall {
        nr: call as u64,
        args,
    }
}

fn uart(byte: u8) -> Exit {
    Exit::PortWrite {
        port: 0x3f8,
        size: 1,
        value: byte.into(),
    }
}

#[test]
fn time_reads_and_lines_are_logged_at_their_own_exit() {
    let p = FakePlatform::new(0);
    let mut r = Recorder::default();
    let exits = [
        hc(Call::TimeNow, [0; 4]),
        uart(b'a'),
        uart(b'\n'),
        hc(Call::Shutdown, [0; 4]),
    ];
    let (stop, record, _) = run_with(exits.into(), &mut r, &p);
    assert_eq!(stop, StopReason::Shutdown { code: 0 });
    assert_eq!(record.deterministic_exits, 4);
    assert_eq!(r.times.len(), 1);
    assert_eq!(
        r.times[0].0.det_exits, 1,
        "the time read counts as the first exit"
    );
    assert_eq!(r.lines, [(r.lines[0].0, b"a".to_vec())]);
    assert_eq!(
        r.lines[0].0.det_exits, 3,
        "the line completes at the third exit"
    );
    assert!(
        p.lines.borrow().is_empty(),
        "the replica decides when a line is printed"
    );
    assert_eq!(r.stopped_at.map(|at| at.det_exits), Some(4));
}

#[test]
fn an_exit_the_replica_cannot_take_is_retried_and_not_counted() {
    let p = FakePlatform::new(0);
    let mut r = Recorder {
        full: true,
        ..Recorder::default()
    };
    // The first `\n` write finds the replica full: it is retried, not completed.
    let (_, record, vcpu) = run_with([uart(b'\n'), hc(Call::Shutdown, [0; 4])].into(), &mut r, &p);
    assert_eq!(record.deterministic_exits, 1, "only the shutdown was taken");
    assert!(
        r.lines.is_empty(),
        "nothing was output while the replica was full"
    );
    assert_eq!(vcpu.completions.len(), 0, "the write was not completed");
}

#[test]
fn a_logging_copy_raises_its_timer_only_at_a_deterministic_boundary() {
    let p = FakePlatform::new(0);
    // The log refuses the interrupt at the first boundary; the asynchronous exit that follows
    // is no boundary, so the interrupt waits for the YIELD's.
    let mut r = Recorder {
        refuse_interrupts: 1,
        ..Recorder::default()
    };
    let exits = [
        hc(Call::TimerSet, [0, 0x20, 0, 0]),
        Exit::TimerExpired,
        hc(Call::Yield, [0; 4]),
        hc(Call::Shutdown, [0; 4]),
    ];
    let (_, _, vcpu) = run_with(exits.into(), &mut r, &p);
    assert_eq!(r.interrupts.len(), 1);
    assert_eq!(
        r.interrupts[0].0.det_exits, 2,
        "logged after the YIELD, not the timer exit"
    );
    assert_eq!(vcpu.delivered, [0x20]);
}
