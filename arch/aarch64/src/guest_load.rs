//! Preparing a partition's memory before its first instruction (and again when it asks to be
//! reset): zeroed, the image copied in, its device tree written, and the whole range cleaned to
//! the point of coherency, because the guest starts with its MMU and caches off (Arm ARM D7.4.9).

use tandem_core::addr::GuestPhysAddr;
use tandem_core::config::{Board, DTB_ROOM, Partition};
use tandem_hw::backend::BootFiles;
use tandem_hw::guest_memory::Coherence;

use crate::dt::{self, Chosen};
use crate::pmu;
use crate::sysreg::{dsb_ish, read_sysreg};

/// Host address backing `gpa`; the configuration guarantees the range lies in one region.
fn host(p: &Partition, gpa: u64, len: u64) -> Option<u64> {
    let region = p.region_for(GuestPhysAddr::new(gpa), len)?;
    Some(region.hpa.raw() + (gpa - region.gpa.raw()))
}

/// Cleans `[start, start + len)` from the data cache to the point of coherency.
fn clean_to_poc(start: u64, len: u64) {
    // CTR_EL0.DminLine: log2 of the smallest data cache line in words.
    // CTR_EL0 is not in aarch64-cpu; read it by name.
    let line = 4u64 << ((read_sysreg!("ctr_el0") >> 16) & 0xf);
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: cleaning a line has no architectural effect on memory contents.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    dsb_ish();
}

/// Why a partition's memory could not be prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum LoadError {
    /// The device tree does not fit between the start of the image's region and the image.
    NoRoomForDeviceTree,
    /// The board does not say where the partition's GIC and PL011 are (validation refuses
    /// such aarch64 boards).
    NoDeviceWindows,
    /// What goes at `gpa` does not fit the partition's memory there (validation refuses such
    /// configurations).
    DoesNotFit { gpa: u64 },
}

/// Loads partition `p` (index `id`) of `board` from `files`: its image and device tree, and for a
/// Linux kernel its initial RAM disk; returns the device tree's guest-physical address (x0).
/// Runs before any vCPU of the partition does.
pub fn load(board: &Board, p: &Partition, id: u32, files: &BootFiles) -> Result<u64, LoadError> {
    let (Some(gic), Some(uart)) = (board.gic, board.guest_uart) else {
        return Err(LoadError::NoDeviceWindows);
    };
    for r in &p.memory {
        // SAFETY: the region is the partition's own host memory (validated: inside RAM, not the
        // hypervisor's, exclusive), identity-mapped, and no vCPU of it runs.
        unsafe { core::ptr::write_bytes(r.hpa.raw() as *mut u8, 0, r.size as usize) };
    }
    copy_in(p, p.image.load.raw(), files.image)?;
    let (dt_gpa, room, chosen) = match p.kernel {
        // Booting.rst: the device tree above the kernel's image_size, 8-byte aligned.
        Some(kernel) => {
            let initrd = match (kernel.initrd, files.initrd) {
                (Some(initrd), Some(bytes)) => {
                    copy_in(p, initrd.gpa.raw(), bytes)?;
                    Some((initrd.gpa.raw(), initrd.gpa.raw() + bytes.len() as u64))
                }
                _ => None,
            };
            let chosen = Chosen {
                bootargs: files.cmdline,
                initrd,
            };
            (kernel.dtb.raw(), DTB_ROOM, chosen)
        }
        // Test guests: the device tree between the start of the image's region and the image.
        None => {
            let region = p
                .region_for(p.image.load, 1)
                .ok_or(LoadError::NoRoomForDeviceTree)?;
            let start = region.gpa.raw();
            let chosen = Chosen {
                bootargs: &p.args,
                initrd: None,
            };
            (start, p.image.load.raw() - start, chosen)
        }
    };
    let dt_host = host(p, dt_gpa, room).ok_or(LoadError::NoRoomForDeviceTree)?;
    // SAFETY: `room` bytes at `dt_gpa` lie inside one of the partition's regions (checked by
    // `host`), clear of the image and initrd (validated), and no vCPU of it runs.
    let buf = unsafe { core::slice::from_raw_parts_mut(dt_host as *mut u8, room as usize) };
    let pmu = pmu::granted(p, &gic);
    dt::write(p, id, &gic, uart, pmu, &chosen, buf).map_err(|_| LoadError::NoRoomForDeviceTree)?;
    for r in &p.memory {
        clean_to_poc(r.hpa.raw(), r.size);
    }
    Ok(dt_gpa)
}

/// Copies `bytes` into partition `p` at `gpa`.
fn copy_in(p: &Partition, gpa: u64, bytes: &[u8]) -> Result<(), LoadError> {
    let dst = host(p, gpa, bytes.len() as u64).ok_or(LoadError::DoesNotFit { gpa })?;
    // SAFETY: `host` found the whole range inside one of the partition's regions, which are its
    // own identity-mapped host memory, and no vCPU of it runs.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst as *mut u8, bytes.len()) };
    Ok(())
}

/// Invalidates `[start, start + len)` in the data cache, cleaning lines to the point of
/// coherency first: a guest running with its caches off writes memory directly, and a line the
/// hypervisor still holds from loading (clean since) would hide that.
fn clean_invalidate(start: u64, len: u64) {
    let line = 4u64 << ((read_sysreg!("ctr_el0") >> 16) & 0xf);
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: the lines are clean or hold what memory should (the hypervisor wrote nothing
        // here since it cleaned them), so cleaning and invalidating loses nothing.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    dsb_ish();
}

/// Copies of guest memory (re-protection) see what the guest wrote with its caches off, and the
/// guest sees them with its caches off.
pub struct Coherent;

impl Coherence for Coherent {
    fn before_read(hpa: u64, len: u64) {
        clean_invalidate(hpa, len);
    }
    fn after_write(hpa: u64, len: u64) {
        clean_to_poc(hpa, len);
    }
}
