//! Exit handling: what each exit means for the partition, computed before anything guest-visible
//! changes. The caller commits the returned outcome last ([`Outcome::commit`]: device effects,
//! then the completion), so a handler cut short can run again.

use crate::addr::GuestPhysAddr;
use crate::config::{PortMode, Unbacked};
use crate::devices::line::{LINE_MAX, LineBuffer};
use crate::devices::sgi::SgiRequest;
use crate::devices::uart16550::Uart16550;
use crate::devices::vgic::VirtualGic;
use crate::devices::{cpuid, msr, pl011};
use crate::exit::{Access, Exit, ExitKind, ShutdownCause};
use crate::hypercall::{self, Call, PartitionInfo, Status};
use crate::outcome::{Next, Outcome};
use crate::platform::{ConsoleOutlet, Platform};
use crate::power::{self, PowerRequest, PowerStatus};
use crate::record::VcpuRecord;
use crate::replica::Replica;
use crate::report::{Notice, StopReason};
use crate::runtime::VcpuRuntime;
use crate::vcpu::{Completion, GuestFault};

/// All ones for an access of `size` bytes: what an undecoded port reads as.
fn all_ones(size: u8) -> u64 {
    u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8)))
}

/// Why a hypercall did not complete.
enum CallError {
    /// Refused with this status.
    Refused(Status),
    /// The replica cannot take its input or output yet: the guest makes the call again.
    Hold,
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        CallError::Refused(status)
    }
}

impl<P: Platform, R: Replica> VcpuRuntime<'_, P, R> {
    /// A console line the guest completed at this exit: an output, which the replica prints when
    /// it may leave.
    fn output(&mut self, line: &[u8]) {
        // Journaled, the line waits in the outbox for the commit (recovery never prints it
        // twice); a line that does not fit, which one exit cannot make, is printed at once.
        if let Some(journal) = self.journal()
            && journal.outbox.put(line)
        {
            return;
        }
        let platform = self.platform;
        let mut out = ConsoleOutlet {
            platform,
            partition: &self.partition.name,
        };
        self.replica
            .output(self.exit_at, line, &|| platform.now_ns(), &mut out);
    }

    /// Prints the line a UART model completed (what of it was not shown yet,
    /// [`Self::show_partial_line`]) and starts the next one.
    fn output_uart_line(&mut self, out: fn(&mut VcpuRecord) -> &mut LineBuffer) {
        let mut line = [0u8; LINE_MAX];
        let done = out(self.record);
        let len = done.unshown().len();
        line[..len].copy_from_slice(done.unshown());
        done.clear();
        self.output(&line[..len]);
    }

    /// The guest waits (idles, or reads its UART's receive side) with part of a line: unless the
    /// partition is fault-tolerant (its output leaves only under the output rule, whole lines),
    /// the platform may show that part now ([`Platform::console_partial`]), and only the rest
    /// follows when the line completes. An interactive shell's prompt and echo appear so.
    fn show_partial_line(&mut self) {
        if self.partition.ft.is_some() {
            return;
        }
        let out = if self.platform.uart_mmio().is_some() {
            self.record.pl011.output()
        } else {
            self.record.uart.output()
        };
        let fresh = out.unshown();
        if !fresh.is_empty() && self.platform.console_partial(&self.partition.name, fresh) {
            out.mark_shown();
        }
    }

    /// Handles `exit` of the guest instruction at `pc`; `gic` is the vCPU's emulated GIC, read
    /// only: its changes come back in the outcome.
    pub(crate) fn handle(&mut self, exit: Exit, pc: u64, gic: Option<&VirtualGic>) -> Outcome {
        // Asynchronous exits only give the loop a chance to raise due interrupts. Checked first
        // so the exit loop's hottest path stays short.
        if exit.kind() == ExitKind::Asynchronous {
            return Outcome::nothing();
        }
        match exit {
            Exit::PortRead { port, size } => self.port_read(port, size, pc),
            Exit::PortWrite { port, size, value } => self.port_write(port, size, value, pc),
            Exit::MmioRead { gpa, size } => {
                if let Some(offset) = self.uart_offset(gpa) {
                    if offset == pl011::DR {
                        self.show_partial_line();
                    }
                    return Outcome::done(Completion::Value(self.record.pl011.read(offset).into()));
                }
                match gic.and_then(|g| Some((g, g.decode(gpa.raw())?))) {
                    Some((g, access)) => Outcome::done(Completion::Value(g.read(access, size))),
                    None => self.unbacked(gpa, Access::Read, pc),
                }
            }
            Exit::MmioWrite { gpa, size, value } => {
                if let Some(offset) = self.uart_offset(gpa) {
                    return self.uart_mmio_write(offset, value as u32);
                }
                match gic.and_then(|g| Some((g, g.decode(gpa.raw())?))) {
                    Some((g, access)) => match g.sgi_request(access, value) {
                        Some(request) => self.send_sgi(request),
                        None => Outcome {
                            gic: Some(g.write(access, size, value)),
                            ..Outcome::done(Completion::Done)
                        },
                    },
                    None => self.unbacked(gpa, Access::Write, pc),
                }
            }
            Exit::PageFault { gpa, access } => self.unbacked(gpa, access, pc),
            Exit::UndecodedAccess { gpa } => Outcome::stop(StopReason::UndecodedAccess { gpa, pc }),
            Exit::Power(request) => self.power(request, pc),
            Exit::SendSgi(request) => self.send_sgi(request),
            Exit::Cpuid {
                leaf,
                subleaf,
                host,
            } => Outcome::done(Completion::Cpuid(cpuid::filter(
                leaf, subleaf, host, self.vcpu,
            ))),
            Exit::MsrRead { msr } => match msr::read(msr) {
                Some(v) => Outcome::done(Completion::Value(v)),
                None => self.deny_msr(msr, false, pc),
            },
            Exit::MsrWrite { msr, value } => {
                if msr::write(msr, value) {
                    Outcome::done(Completion::Done)
                } else {
                    self.deny_msr(msr, true, pc)
                }
            }
            Exit::Hypercall { nr, args } => self.hypercall(nr, args, pc),
            // The counter reads the partition's time, as TIME_NOW does: logged or replayed.
            Exit::CounterRead => match self.time_read() {
                Ok(ns) => Outcome::done(Completion::Counter { ns }),
                Err(_) => Outcome::retry(),
            },
            // The exit itself is the point: the loop delivers what is due at its boundary.
            Exit::Pause => Outcome::done(Completion::Done),
            Exit::Halt => {
                self.show_partial_line();
                Outcome {
                    next: Next::WaitForInterrupt,
                    ..Outcome::done(Completion::Done)
                }
            }
            Exit::Forbidden { code } => {
                self.notice(Notice::ForbiddenInstruction { code, pc });
                Outcome::done(Completion::Fault(GuestFault::InvalidOpcode))
            }
            Exit::Shutdown {
                cause: ShutdownCause::TripleFault,
            } => Outcome::stop(StopReason::TripleFault { pc }),
            Exit::Shutdown {
                cause: ShutdownCause::ExceptionLoop { vector },
            } => Outcome::stop(StopReason::ExceptionLoop { vector, pc }),
            Exit::Unhandled {
                code,
                qualification,
            } => Outcome::stop(StopReason::UnhandledExit {
                code,
                qualification,
                pc,
            }),
            // Answered above, before the match.
            Exit::ExternalInterrupt { .. } | Exit::TimerExpired | Exit::InterruptWindow => {
                Outcome::nothing()
            }
        }
    }

    /// Sends the SGIs `request` asks for, to the partition's own vCPUs only (the request names
    /// no other); a repeated send leaves the SGI pending, as one send would.
    fn send_sgi(&mut self, request: SgiRequest) -> Outcome {
        request
            .vcpus()
            .filter(|&v| (v as usize) < self.partition.cpus.len())
            .for_each(|v| self.platform.send_sgi(v, request.intid));
        Outcome::done(Completion::Done)
    }

    /// An access to `gpa`, which neither the partition's memory nor one of its devices backs:
    /// an external abort in the guest (noted), or the partition's stop if it asked to be strict.
    fn unbacked(&mut self, gpa: GuestPhysAddr, access: Access, pc: u64) -> Outcome {
        match self.partition.unbacked {
            Unbacked::ExternalAbort => {
                self.notice(Notice::ExternalAbort { gpa, access, pc });
                Outcome::done(Completion::Fault(GuestFault::ExternalAbort))
            }
            Unbacked::Stop => Outcome::stop(StopReason::MemoryViolation { gpa, access, pc }),
        }
    }

    /// The register offset of `gpa` in the partition's memory-mapped UART, if it is one.
    fn uart_offset(&self, gpa: GuestPhysAddr) -> Option<u64> {
        let base = self.platform.uart_mmio()?.base;
        gpa.offset_from(base).filter(|&off| off < pl011::SIZE)
    }

    fn uart_mmio_write(&mut self, offset: u64, value: u32) -> Outcome {
        if !self.replica.output_ready(1) {
            return Outcome::retry();
        }
        if self.record.pl011.write(offset, value) {
            self.output_uart_line(|r| r.pl011.output());
        }
        Outcome::done(Completion::Done)
    }

    fn power(&mut self, request: PowerRequest, pc: u64) -> Outcome {
        let status = |s: PowerStatus| Outcome::done(Completion::Value(s as i32 as i64 as u64));
        let vcpus = self.partition.cpus.len() as u64;
        match request {
            PowerRequest::Version => Outcome::done(Completion::Value(power::VERSION)),
            PowerRequest::Features { implemented: true } => status(PowerStatus::Success),
            PowerRequest::Features { implemented: false } => status(PowerStatus::NotSupported),
            PowerRequest::CpuOn {
                target,
                entry,
                context,
            } => {
                let result = match power::check_cpu_on(self.partition, self.vcpu, target, entry) {
                    Ok(()) => self
                        .platform
                        .start_vcpu(self.id, target as u32, entry, context),
                    Err(refused) => refused,
                };
                if result != PowerStatus::Success {
                    self.notice(Notice::RefusedPowerCall {
                        status: result as i32,
                        target,
                        pc,
                    });
                }
                status(result)
            }
            PowerRequest::AffinityInfo { target } => {
                if target >= vcpus {
                    return status(PowerStatus::InvalidParameters);
                }
                let on = target == u64::from(self.vcpu)
                    || self.platform.vcpu_running(self.id, target as u32);
                Outcome::done(Completion::Value(if on {
                    power::AFFINITY_ON
                } else {
                    power::AFFINITY_OFF
                }))
            }
            PowerRequest::CpuOff => Outcome::stop(StopReason::VcpuOff),
            PowerRequest::SystemOff => Outcome::stop(StopReason::PoweredOff),
            PowerRequest::SystemReset => Outcome::stop(StopReason::ResetRequested),
            PowerRequest::Unknown { .. } => status(PowerStatus::NotSupported),
        }
    }

    fn port_mode(&self, port: u16) -> Option<PortMode> {
        self.partition
            .ports
            .iter()
            .find(|r| r.contains(port))
            .map(|r| r.mode)
    }

    fn port_read(&mut self, port: u16, size: u8, pc: u64) -> Outcome {
        if Uart16550::handles(port) {
            if Uart16550::receives(port) {
                self.show_partial_line();
            }
            return Outcome::done(Completion::Value(self.record.uart.read(port).into()));
        }
        if self.port_mode(port).is_none() {
            self.notice(Notice::DeniedPort {
                port,
                write: false,
                pc,
            });
        }
        Outcome::done(Completion::Value(all_ones(size)))
    }

    fn port_write(&mut self, port: u16, size: u8, value: u32, pc: u64) -> Outcome {
        if Uart16550::handles(port) {
            if !self.replica.output_ready(usize::from(size)) {
                return Outcome::retry();
            }
            // Only the low byte reaches an 8-bit UART register; wider writes hit adjacent ones.
            for (i, byte) in value.to_le_bytes()[..usize::from(size.min(4))]
                .iter()
                .enumerate()
            {
                let p = port.wrapping_add(i as u16);
                if Uart16550::handles(p) && self.record.uart.write(p, *byte) {
                    self.output_uart_line(|r| r.uart.output());
                }
            }
        } else if self.port_mode(port).is_none() {
            self.notice(Notice::DeniedPort {
                port,
                write: true,
                pc,
            });
        }
        Outcome::done(Completion::Done)
    }

    fn deny_msr(&mut self, msr: u32, write: bool, pc: u64) -> Outcome {
        self.notice(Notice::DeniedMsr { msr, write, pc });
        Outcome::done(Completion::Fault(GuestFault::GeneralProtection))
    }

    fn hypercall(&mut self, nr: u64, args: [u64; 4], pc: u64) -> Outcome {
        let result = match Call::from_nr(nr) {
            None => Err(Status::NoSys.into()),
            Some(Call::AbiVersion) => Ok(hypercall::ABI_VERSION),
            Some(Call::ConsoleWrite) => self.console_write(args[0], args[1]),
            Some(Call::PartitionInfo) => self.partition_info(args[0], args[1]),
            Some(Call::Yield) => Ok(0),
            Some(Call::Shutdown) => {
                return Outcome::stop(StopReason::Shutdown { code: args[0] });
            }
            Some(Call::TimerSet) => self.timer_set(args[0], args[1]),
            Some(Call::TimeNow) => self.time_read(),
        };
        let (status, value) = match result {
            Ok(value) => (Status::Ok as i64, value),
            Err(CallError::Hold) => return Outcome::retry(),
            Err(CallError::Refused(status)) => {
                self.notice(Notice::BadHypercall {
                    nr,
                    status: status as i64,
                    pc,
                });
                (status as i64, 0)
            }
        };
        Outcome::done(Completion::Hypercall { status, value })
    }

    /// The region and offset holding `len` bytes at guest-physical `gpa`.
    fn guest_range(
        &self,
        gpa: u64,
        len: u64,
    ) -> Result<(&crate::config::MemoryRegion, u64), Status> {
        let gpa = GuestPhysAddr::new(gpa);
        let region = self.partition.region_for(gpa, len).ok_or(Status::Fault)?;
        let offset = gpa.offset_from(region.gpa).ok_or(Status::Fault)?;
        Ok((region, offset))
    }

    fn console_write(&mut self, gpa: u64, len: u64) -> Result<u64, CallError> {
        if len > hypercall::CONSOLE_WRITE_MAX {
            return Err(Status::Invalid.into());
        }
        let (region, offset) = self.guest_range(gpa, len)?;
        let mut buf = [0u8; hypercall::CONSOLE_WRITE_MAX as usize];
        let buf = &mut buf[..len as usize];
        self.platform.read_guest(region, offset, buf);
        let lines = || buf.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        if !self.replica.output_ready(lines().count()) {
            return Err(CallError::Hold);
        }
        for line in lines() {
            self.output(line);
        }
        Ok(len)
    }

    fn partition_info(&mut self, gpa: u64, len: u64) -> Result<u64, CallError> {
        let size = hypercall::PARTITION_INFO_SIZE as u64;
        if len < size {
            return Err(Status::Invalid.into());
        }
        let (region, offset) = self.guest_range(gpa, size)?;
        let mut info = PartitionInfo {
            abi_version: hypercall::ABI_VERSION as u32,
            id: self.id,
            vcpus: self.partition.cpus.len() as u32,
            resets: self.record.resets,
            memory_bytes: self.partition.memory_size(),
            name: [0; 16],
            args: [0; 64],
        };
        info.name[..self.partition.name.len()].copy_from_slice(self.partition.name.as_bytes());
        info.args[..self.partition.args.len()].copy_from_slice(self.partition.args.as_bytes());
        self.platform.write_guest(region, offset, &info.to_bytes());
        Ok(size)
    }

    /// The partition's time as the guest sees it at this exit (logged or replayed under FT).
    fn time_read(&mut self) -> Result<u64, CallError> {
        let now = self.partition_now();
        self.replica
            .time_read(self.exit_at, now)
            .map_err(|_| CallError::Hold)
    }

    fn timer_set(&mut self, delay_ns: u64, vector: u64) -> Result<u64, CallError> {
        match vector {
            0 => self.record.timer.disarm(),
            hypercall::TIMER_VECTOR_MIN..=255 => {
                let now = self.time_read()?;
                self.record.timer.arm(now, delay_ns, vector as u8);
            }
            _ => return Err(Status::Invalid.into()),
        }
        Ok(0)
    }
}
