//! Host tests of the exit loop and its handlers, driven by a scripted vCPU.

use crate::addr::GuestPhysAddr;
use crate::config::{GuestUart, Unbacked};
use crate::devices::sgi::SgiRequest;
use crate::exit::{Access, Exit, ShutdownCause};
use crate::fake::{FakePlatform, MEMORY, ScriptedVcpu, partition, run, run_on};
use crate::hypercall::{ABI_VERSION, Call, PARTITION_INFO_SIZE, Status};
use crate::power::{PowerRequest, PowerStatus};
use crate::report::{Notice, StopReason};
use crate::vcpu::{Completion, EntryError, GuestFault, Vcpu};

const END: StopReason = StopReason::EntryFailed(EntryError::InstructionFailed { error: 0 });

fn hc(call: u64, args: [u64; 4]) -> Exit {
    Exit::Hypercall { nr: call, args }
}

fn status(c: &Completion) -> i64 {
    match c {
        Completion::Hypercall { status, .. } => *status,
        other => panic!("not a hypercall completion: {other:?}"),
    }
}

#[test]
fn uart_writes_become_prefixed_lines() {
    let p = FakePlatform::new(0);
    let exits = b"hi\n".iter().map(|&b| Exit::PortWrite {
        port: 0x3f8,
        size: 1,
        value: b.into(),
    });
    let (stop, _, record) = run(exits, &p);
    assert_eq!(stop, END);
    assert_eq!(*p.lines.borrow(), vec![("guest".into(), "hi".into())]);
    assert_eq!(record.deterministic_exits, 3);
}

#[test]
fn good_hypercalls_succeed() {
    let p = FakePlatform::new(MEMORY as usize);
    p.memory.borrow_mut()[0x5000..0x5006].copy_from_slice(b"a\nbc\n\n");
    let exits = [
        hc(Call::AbiVersion as u64, [0; 4]),
        hc(Call::ConsoleWrite as u64, [0x5000, 6, 0, 0]),
        hc(Call::PartitionInfo as u64, [0x8000, 200, 0, 0]),
        hc(Call::Yield as u64, [0; 4]),
    ];
    let (_, vcpu, _) = run(exits, &p);
    assert_eq!(
        vcpu.completions[0],
        Completion::Hypercall {
            status: 0,
            value: ABI_VERSION
        }
    );
    assert!(vcpu.completions.iter().all(|c| status(c) == 0));
    let lines: Vec<_> = p.lines.borrow().iter().map(|(_, l)| l.clone()).collect();
    assert_eq!(lines, ["a", "bc"]);
    let mem = p.memory.borrow();
    let info = &mem[0x8000..0x8000 + PARTITION_INFO_SIZE];
    assert_eq!(
        u32::from_le_bytes(info[4..8].try_into().unwrap()),
        3,
        "partition id"
    );
    assert_eq!(&info[24..29], b"guest");
    assert_eq!(&info[40..49], b"mode=test");
    assert!(p.notices.borrow().is_empty());
}

#[test]
fn bad_hypercalls_return_errors_and_the_partition_keeps_running() {
    let p = FakePlatform::new(MEMORY as usize);
    let exits = [
        hc(0xdead_beef, [0; 4]),
        hc(Call::ConsoleWrite as u64, [MEMORY - 2, 4, 0, 0]),
        hc(Call::ConsoleWrite as u64, [0, 1 << 40, 0, 0]),
        hc(Call::ConsoleWrite as u64, [u64::MAX, 2, 0, 0]),
        hc(Call::PartitionInfo as u64, [0x1000, 8, 0, 0]),
        hc(Call::PartitionInfo as u64, [1 << 45, 200, 0, 0]),
        hc(Call::TimerSet as u64, [10, 7, 0, 0]),
        hc(Call::TimerSet as u64, [10, 256, 0, 0]),
    ];
    let (stop, vcpu, _) = run(exits, &p);
    assert_eq!(stop, END, "no bad hypercall stops the partition");
    let statuses: Vec<i64> = vcpu.completions.iter().map(status).collect();
    use Status::*;
    let expected = [
        NoSys, Fault, Invalid, Fault, Invalid, Fault, Invalid, Invalid,
    ];
    assert_eq!(statuses, expected.map(|s| s as i64));
    assert_eq!(p.notices.borrow().len(), expected.len());
}

#[test]
fn shutdown_stops_with_the_guest_code() {
    let p = FakePlatform::new(0);
    let exits = [hc(Call::Shutdown as u64, [42, 0, 0, 0]), Exit::Halt];
    let (stop, vcpu, _) = run(exits, &p);
    assert_eq!(stop, StopReason::Shutdown { code: 42 });
    assert!(
        vcpu.completions.is_empty(),
        "nothing guest-visible after shutdown"
    );
}

#[test]
fn memory_violations_stop_with_address_and_pc() {
    let p = FakePlatform::new(0);
    let gpa = GuestPhysAddr::new(0x4000_0000);
    let (stop, _, _) = run(
        [Exit::PageFault {
            gpa,
            access: Access::Write,
        }],
        &p,
    );
    assert_eq!(
        stop,
        StopReason::MemoryViolation {
            gpa,
            access: Access::Write,
            pc: 0x10_0000
        }
    );
}

#[test]
fn denied_ports_read_all_ones_and_are_reported_once_each() {
    let p = FakePlatform::new(0);
    let exits = [
        Exit::PortRead {
            port: 0x70,
            size: 1,
        },
        Exit::PortRead {
            port: 0x80,
            size: 2,
        },
        Exit::PortWrite {
            port: 0xcf8,
            size: 4,
            value: 0x8000_0000,
        },
    ];
    let (_, vcpu, _) = run(exits, &p);
    assert_eq!(
        vcpu.completions,
        [
            Completion::Value(0xff),
            Completion::Value(0xffff),
            Completion::Done
        ]
    );
    let notices = p.notices.borrow();
    assert_eq!(
        notices.len(),
        2,
        "the ignored range 0x80 is granted: no notice"
    );
    assert!(matches!(
        notices[0],
        Notice::DeniedPort {
            port: 0x70,
            write: false,
            ..
        }
    ));
    assert!(matches!(
        notices[1],
        Notice::DeniedPort {
            port: 0xcf8,
            write: true,
            ..
        }
    ));
}

#[test]
fn unknown_msrs_raise_general_protection() {
    let p = FakePlatform::new(0);
    let exits = [
        Exit::MsrRead { msr: 0xc001_0015 },
        Exit::MsrWrite {
            msr: 0x10,
            value: 0,
        },
        Exit::MsrRead { msr: 0x1a0 },
    ];
    let (_, vcpu, _) = run(exits, &p);
    let gp = Completion::Fault(GuestFault::GeneralProtection);
    assert_eq!(vcpu.completions, [gp, gp, Completion::Value(1)]);
}

#[test]
fn notices_are_rate_limited() {
    let p = FakePlatform::new(0);
    let exits = (0..100).map(|_| Exit::PortRead {
        port: 0x70,
        size: 1,
    });
    let (_, _, record) = run(exits, &p);
    assert_eq!(
        p.notices.borrow().len(),
        crate::runtime::NOTICE_LIMIT as usize
    );
    assert_eq!(record.notices, 100);
}

#[test]
fn a_halted_guest_sleeps_until_its_timer_and_is_woken_by_the_vector() {
    let p = FakePlatform::new(0);
    let start = p.now.get();
    let exits = [
        hc(Call::TimerSet as u64, [5_000, 0x20, 0, 0]),
        Exit::Halt,
        hc(Call::TimeNow as u64, [0; 4]),
    ];
    let (_, vcpu, record) = run(exits, &p);
    assert_eq!(vcpu.delivered, [0x20]);
    assert_eq!(
        p.now.get(),
        start + 5_000,
        "the CPU idled exactly to the deadline"
    );
    assert_eq!(
        vcpu.completions[2],
        Completion::Hypercall {
            status: 0,
            value: 5_000
        }
    );
    assert_eq!(record.timer.deadline(), None, "one-shot");
}

#[test]
fn halting_with_no_wake_source_stops_the_partition() {
    let p = FakePlatform::new(0);
    let (stop, _, _) = run([Exit::Halt], &p);
    assert!(matches!(stop, StopReason::HaltedForever { .. }));
}

#[test]
fn an_exception_that_raises_itself_on_every_delivery_stops_the_partition() {
    let p = FakePlatform::new(0);
    let looping = Exit::Shutdown {
        cause: ShutdownCause::ExceptionLoop { vector: 1 },
    };
    let (stop, _, _) = run([looping], &p);
    assert!(matches!(stop, StopReason::ExceptionLoop { vector: 1, .. }));
}

#[test]
fn halting_with_interrupts_off_stops_even_with_a_timer() {
    let p = FakePlatform::new(0);
    let platform = &p;
    let part = crate::fake::partition();
    let mut record = crate::record::VcpuRecord::new(0);
    let mut vcpu = crate::fake::ScriptedVcpu::new([
        hc(Call::TimerSet as u64, [5_000, 0x20, 0, 0]),
        Exit::Halt,
    ]);
    vcpu.interrupts_on = false;
    let stop = crate::runtime::VcpuRuntime {
        partition: &part,
        id: 0,
        vcpu: 0,
        record: &mut record,
        platform,
        replica: &mut crate::replica::Solo,
        exit_at: crate::point::ExecPoint::default(),
        journal: None,
    }
    .run(&mut vcpu);
    assert!(matches!(stop, StopReason::HaltedForever { .. }));
}

#[test]
fn asynchronous_exits_are_counted_apart() {
    let p = FakePlatform::new(0);
    let exits = [
        Exit::TimerExpired,
        Exit::ExternalInterrupt { vector: 0x30 },
        Exit::Cpuid {
            leaf: 0,
            subleaf: 0,
            host: [1, 2, 3, 4],
        },
    ];
    let (_, vcpu, record) = run(exits, &p);
    assert_eq!(record.asynchronous_exits, 2);
    assert_eq!(record.deterministic_exits, 1);
    assert_eq!(vcpu.completions, [Completion::Cpuid([1, 2, 3, 4])]);
}

#[test]
fn an_unbacked_access_is_an_external_abort_unless_the_partition_is_strict() {
    let p = FakePlatform::new(0);
    let gpa = GuestPhysAddr::new(0x0a00_0000);
    let exits = || {
        [
            Exit::MmioRead { gpa, size: 4 },
            Exit::PageFault {
                gpa,
                access: Access::Execute,
            },
        ]
    };
    let mut part = partition();
    part.unbacked = Unbacked::ExternalAbort;
    let (stop, vcpu, _) = run_on(&part, ScriptedVcpu::new(exits()), &p);
    assert!(
        matches!(stop, StopReason::EntryFailed(_)),
        "ran on: {stop:?}"
    );
    assert_eq!(
        vcpu.completions,
        [Completion::Fault(GuestFault::ExternalAbort); 2]
    );
    assert_eq!(
        p.notices.borrow()[0],
        Notice::ExternalAbort {
            gpa,
            access: Access::Read,
            pc: 0x10_0000,
        }
    );
    part.unbacked = Unbacked::Stop;
    let (stop, _, _) = run_on(&part, ScriptedVcpu::new(exits()), &p);
    assert_eq!(
        stop,
        StopReason::MemoryViolation {
            gpa,
            access: Access::Read,
            pc: 0x10_0000,
        }
    );
}

#[test]
fn mmio_uart_writes_become_lines_and_other_mmio_stops_the_partition() {
    let mut p = FakePlatform::new(0);
    let base = GuestPhysAddr::new(0x0900_0000);
    p.uart_mmio = Some(GuestUart { base, intid: 33 });
    let mut exits: Vec<Exit> = b"ok\n"
        .iter()
        .map(|&b| Exit::MmioWrite {
            gpa: base,
            size: 4,
            value: b.into(),
        })
        .collect();
    exits.push(Exit::MmioRead {
        gpa: base + 0x18,
        size: 4,
    });
    exits.push(Exit::MmioWrite {
        gpa: base + 0x1000,
        size: 4,
        value: 0,
    });
    let (stop, vcpu, _) = run(exits, &p);
    assert_eq!(*p.lines.borrow(), vec![("guest".into(), "ok".into())]);
    assert_eq!(
        vcpu.completions[3],
        Completion::Value(0x90),
        "flags: both FIFOs empty"
    );
    assert_eq!(
        stop,
        StopReason::MemoryViolation {
            gpa: base + 0x1000,
            access: Access::Write,
            pc: 0x10_0004,
        }
    );
}

#[test]
fn mmio_is_a_violation_where_the_machine_has_no_mmio_uart() {
    let p = FakePlatform::new(0);
    let gpa = GuestPhysAddr::new(0x0900_0000);
    let (stop, _, _) = run([Exit::MmioRead { gpa, size: 1 }], &p);
    assert_eq!(
        stop,
        StopReason::MemoryViolation {
            gpa,
            access: Access::Read,
            pc: 0x10_0000
        }
    );
}

#[test]
fn undecoded_accesses_stop_the_partition_with_the_address() {
    let p = FakePlatform::new(0);
    let gpa = GuestPhysAddr::new(0x0800_0000);
    let (stop, _, _) = run([Exit::UndecodedAccess { gpa }], &p);
    assert_eq!(stop, StopReason::UndecodedAccess { gpa, pc: 0x10_0000 });
}

fn power(r: PowerRequest) -> Exit {
    Exit::Power(r)
}

#[test]
fn cpu_on_is_refused_outside_the_partition_and_forwarded_inside_it() {
    let p = FakePlatform::new(0);
    let mut part = crate::fake::partition();
    part.cpus.push(5).unwrap();
    let exits = [
        power(PowerRequest::Version),
        power(PowerRequest::CpuOn {
            target: 2,
            entry: 0x4000,
            context: 7,
        }),
        power(PowerRequest::CpuOn {
            target: 0,
            entry: 0x4000,
            context: 7,
        }),
        power(PowerRequest::CpuOn {
            target: 1,
            entry: 0x4000,
            context: 7,
        }),
        power(PowerRequest::AffinityInfo { target: 9 }),
        power(PowerRequest::Unknown {
            function: 0x8400_00ff,
        }),
    ];
    let (_, vcpu, _) = run_on(&part, ScriptedVcpu::new(exits), &p);
    let value = |s: PowerStatus| Completion::Value(s as i32 as i64 as u64);
    assert_eq!(
        vcpu.completions,
        [
            Completion::Value(crate::power::VERSION),
            value(PowerStatus::InvalidParameters),
            value(PowerStatus::AlreadyOn),
            value(PowerStatus::Success),
            value(PowerStatus::InvalidParameters),
            value(PowerStatus::NotSupported),
        ]
    );
    assert_eq!(*p.started.borrow(), [(3, 1, 0x4000, 7)]);
    assert!(matches!(
        p.notices.borrow()[0],
        Notice::RefusedPowerCall {
            status: -2,
            target: 2,
            ..
        }
    ));
}

#[test]
fn system_off_and_reset_stop_the_partition_with_their_reason() {
    let p = FakePlatform::new(0);
    assert_eq!(
        run([power(PowerRequest::SystemOff)], &p).0,
        StopReason::PoweredOff
    );
    assert_eq!(
        run([power(PowerRequest::SystemReset)], &p).0,
        StopReason::ResetRequested
    );
    assert_eq!(
        run([power(PowerRequest::CpuOff)], &p).0,
        StopReason::VcpuOff
    );
}

#[test]
fn a_halted_guest_sleeps_until_its_own_timer() {
    let p = FakePlatform::new(0);
    let mut vcpu = ScriptedVcpu::new([Exit::Halt]);
    vcpu.wake = Some(5_000);
    let (stop, _, _) = run_on(&crate::fake::partition(), vcpu, &p);
    assert_eq!(stop, END, "woken, then the script ends");
    assert_eq!(p.now.get(), 5_000);
    let (stop, _, _) = run([Exit::Halt], &p);
    assert!(matches!(stop, StopReason::HaltedForever { .. }));
}

#[test]
fn a_vcpu_stops_when_a_sibling_stopped_its_partition() {
    let mut p = FakePlatform::new(0);
    p.stops_at = Some(0);
    let (stop, vcpu, _) = run([hc(Call::Yield as u64, [0; 4])], &p);
    assert_eq!(stop, StopReason::WithPartition { vcpu: 0 });
    assert!(vcpu.completions.is_empty(), "the guest did not run again");
}

#[test]
fn a_sibling_stopping_the_partition_ends_a_wait_for_interrupt() {
    let mut p = FakePlatform::new(0);
    p.stops_at = Some(3_000);
    let mut vcpu = ScriptedVcpu::new([Exit::Halt]);
    vcpu.wake = Some(1_000_000_000);
    let (stop, _, _) = run_on(&crate::fake::partition(), vcpu, &p);
    assert_eq!(stop, StopReason::WithPartition { vcpu: 0 });
    assert_eq!(
        p.now.get(),
        3_000,
        "kicked out of the wait, not woken by the timer"
    );
}

#[test]
fn sgis_go_to_the_partitions_own_vcpus_only() {
    let p = FakePlatform::new(0);
    let mut part = crate::fake::partition();
    part.cpus.push(1).unwrap();
    // vCPUs 1 and 5: the partition has no vCPU 5.
    let sgi = Exit::SendSgi(SgiRequest {
        intid: 3,
        targets: 1 << 1 | 1 << 5,
    });
    let (stop, vcpu, _) = run_on(&part, ScriptedVcpu::new([sgi]), &p);
    assert_eq!(stop, END);
    assert_eq!(*p.sgis_sent.borrow(), [(1, 3)]);
    assert_eq!(vcpu.completions, [Completion::Done]);
}

#[test]
fn a_vcpu_halted_without_a_timer_waits_for_a_siblings_sgi() {
    let p = FakePlatform::new(0);
    p.sgis_while_waiting.set(1 << 7);
    let (stop, vcpu, _) = run([Exit::Halt, Exit::Halt], &p);
    assert_eq!(
        vcpu.delivered,
        [7],
        "woken by the SGI, which is then delivered"
    );
    assert!(
        matches!(stop, StopReason::HaltedForever { .. }),
        "the second WFI has no sibling left to wake it"
    );
}

#[test]
fn partition_info_reports_resets() {
    let p = FakePlatform::new(MEMORY as usize);
    let part = crate::fake::partition();
    let mut record = crate::record::VcpuRecord::new(0);
    record.resets = 2;
    let mut vcpu = ScriptedVcpu::new([hc(Call::PartitionInfo as u64, [0x8000, 104, 0, 0])]);
    crate::runtime::VcpuRuntime {
        partition: &part,
        id: 0,
        vcpu: 0,
        record: &mut record,
        platform: &p,
        replica: &mut crate::replica::Solo,
        exit_at: crate::point::ExecPoint::default(),
        journal: None,
    }
    .run(&mut vcpu);
    let mem = p.memory.borrow();
    assert_eq!(
        u32::from_le_bytes(mem[0x800c..0x8010].try_into().unwrap()),
        2
    );
}

#[test]
fn execution_point_counts_committed_exits_and_sees_registers() {
    let p = FakePlatform::new(0);
    let part = crate::fake::partition();
    let mut record = crate::record::VcpuRecord::new(0);
    let mut vcpu = crate::fake::ScriptedVcpu::new([
        Exit::Cpuid {
            leaf: 0,
            subleaf: 0,
            host: [0; 4],
        },
        Exit::TimerExpired,
        hc(Call::Yield as u64, [0; 4]),
    ]);
    let mut runtime = crate::runtime::VcpuRuntime {
        partition: &part,
        id: 0,
        vcpu: 0,
        record: &mut record,
        platform: &p,
        replica: &mut crate::replica::Solo,
        exit_at: crate::point::ExecPoint::default(),
        journal: None,
    };
    let start = runtime.execution_point(&vcpu);
    assert_eq!(start.det_exits, 0);
    // The script ends with a failed entry, after three exits of which two commit as deterministic.
    runtime.run(&mut vcpu);
    let point = runtime.execution_point(&vcpu);
    assert_eq!(point.det_exits, 2);
    assert_eq!(point.pc, vcpu.pc);
    assert_ne!(point.reg_hash, start.reg_hash, "the PC moved");
    vcpu.set_gpr(3, 0xdead).unwrap();
    assert_ne!(runtime.execution_point(&vcpu).reg_hash, point.reg_hash);
    assert!(vcpu.set_gpr(16, 0).is_err());
}

/// The 16550's receive buffer read, and bytes written to it.
fn rbr_read() -> Exit {
    Exit::PortRead {
        port: 0x3f8,
        size: 1,
    }
}

fn uart_out(bytes: &[u8]) -> impl Iterator<Item = Exit> + '_ {
    bytes.iter().map(|&b| Exit::PortWrite {
        port: 0x3f8,
        size: 1,
        value: b.into(),
    })
}

/// A shell's prompt, its echo of a typed `ls`, Enter, and a part left when it idles.
fn shell_exits() -> Vec<Exit> {
    let mut exits: Vec<Exit> = uart_out(b"/ # ").collect();
    exits.push(rbr_read());
    exits.extend(uart_out(b"ls"));
    exits.push(rbr_read());
    exits.push(rbr_read());
    exits.extend(uart_out(b"\nx"));
    exits.push(Exit::Halt);
    exits
}

#[test]
fn a_guest_waiting_with_part_of_a_line_shows_it_when_the_platform_does() {
    let p = {
        let mut p = FakePlatform::new(0);
        p.partial = true;
        p
    };
    run(shell_exits(), &p);
    assert_eq!(
        String::from_utf8(p.console.take()).unwrap(),
        "[guest] / # ls\n[guest] x"
    );
    // The completed line only brought its newline.
    assert_eq!(*p.lines.borrow(), vec![("guest".into(), "".into())]);
}

#[test]
fn whole_lines_only_without_partial_lines_or_for_fault_tolerant_partitions() {
    use crate::config::{Ft, FtDelivery, FtLink, FtRole};
    let mut ft = partition();
    ft.ft = Some(Ft {
        role: FtRole::Primary,
        peer: 1,
        pair: 0,
        link: FtLink::Ring,
        heartbeat_us: 500,
        suspect_after: 10,
        delivery: FtDelivery::Exit,
    });
    for (partial, part) in [(false, partition()), (true, ft)] {
        let mut p = FakePlatform::new(0);
        p.partial = partial;
        run_on(&part, ScriptedVcpu::new(shell_exits()), &p);
        assert_eq!(
            String::from_utf8(p.console.take()).unwrap(),
            "[guest] / # ls\n"
        );
        assert_eq!(*p.lines.borrow(), vec![("guest".into(), "/ # ls".into())]);
    }
}

mod partial_lines {
    use super::*;
    use proptest::prelude::*;

    /// A guest's UART accesses: a byte written (`Some`), or the receive buffer read (`None`).
    fn accesses() -> impl Strategy<Value = Vec<Option<u8>>> {
        proptest::collection::vec(proptest::option::of(any::<u8>()), 0..300)
    }

    fn console(partial: bool, accesses: &[Option<u8>]) -> String {
        let mut p = FakePlatform::new(0);
        p.partial = partial;
        let exits = accesses.iter().map(|a| match a {
            Some(b) => Exit::PortWrite {
                port: 0x3f8,
                size: 1,
                value: (*b).into(),
            },
            None => rbr_read(),
        });
        run(exits.chain(uart_out(b"\n")), &p);
        String::from_utf8(p.console.take()).unwrap()
    }

    proptest! {
        /// Any bytes, shown in parts at any reads: no panic, and the console holds the very
        /// lines whole printing makes (only one partition prints, so nothing cuts in).
        #[test]
        fn parts_make_the_same_lines(accesses in accesses()) {
            prop_assert_eq!(console(true, &accesses), console(false, &accesses));
        }
    }
}
