//! Guest images carried beside the hypervisor's own image: how much of the board's image area
//! the configuration's images use, and whether a boot module the boot loader says carries them
//! can be moved there ([`ImageCarrier::Multiboot2`]).
//!
//! A boot loader's description of a module is its word, nothing more: each address is checked
//! against the validated board before a byte is moved. The images themselves are checked later,
//! one by one, against the CRC the configuration holds (`tandem_hw::bringup`).

use core::fmt;

use crate::config::{ImageCarrier, ImageSource, PhysRange, System};

/// The bytes of the image area the configuration's images reach: the end of the last one (0 if
/// no image is carried beside the hypervisor).
pub fn needed(sys: &System) -> u64 {
    let end = |source: ImageSource, size: u64| match source {
        ImageSource::Beside { offset, .. } => offset.saturating_add(size),
        ImageSource::Bundle { .. } => 0,
    };
    sys.partitions
        .iter()
        .flat_map(|p| {
            let initrd = p.kernel.and_then(|k| k.initrd);
            [
                end(p.image.source, p.image.size),
                initrd.map_or(0, |i| end(i.source, i.size)),
            ]
        })
        .max()
        .unwrap_or(0)
}

/// A boot module as the boot loader describes it: physical addresses, `end` exclusive
/// (Multiboot2 specification 2.0, 3.6.6: `mod_start`, `mod_end`, as GRUB writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module {
    pub start: u64,
    pub end: u64,
}

/// Where the images module's bytes go: `len` bytes from `from` to `to`, the image area's base
/// (the two ranges may overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub from: u64,
    pub to: u64,
    pub len: u64,
}

/// Why the images module cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleError {
    /// The board's images travel another way (or it has no image area).
    NotCarried,
    /// The boot loader passed no module by the images' name.
    Missing { needed: u64 },
    /// The module's end lies below its start.
    Reversed { start: u64, end: u64 },
    /// The module is not inside the board's RAM.
    OutsideRam { start: u64, end: u64 },
    /// The module overlaps the hypervisor's loaded image, which the boot loader must have kept
    /// clear.
    OverImage { start: u64, end: u64 },
    /// The module ends before the last image does: not the images file this configuration was
    /// built with.
    TooShort { len: u64, needed: u64 },
    /// The module is larger than the image area.
    TooLong { len: u64, area: u64 },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ModuleError::NotCarried => write!(
                f,
                "the board's images do not travel as a boot module (`images.carrier`)"
            ),
            ModuleError::Missing { needed } => write!(
                f,
                "the boot loader passed no module named `{}` (grub.cfg: `module2 /boot/images.bin \
                 {}`), and the partitions' images need {needed:#x} bytes of it",
                IMAGES_MODULE, IMAGES_MODULE
            ),
            ModuleError::Reversed { start, end } => write!(
                f,
                "the images module ends at {end:#x}, below its start {start:#x}"
            ),
            ModuleError::OutsideRam { start, end } => write!(
                f,
                "the images module at {start:#x}..{end:#x} is not inside the board's RAM"
            ),
            ModuleError::OverImage { start, end } => write!(
                f,
                "the images module at {start:#x}..{end:#x} overlaps the hypervisor's image"
            ),
            ModuleError::TooShort { len, needed } => write!(
                f,
                "the images module has {len:#x} bytes, and the partitions' images need \
                 {needed:#x}: it is not the images file this hypervisor was built with"
            ),
            ModuleError::TooLong { len, area } => write!(
                f,
                "the images module has {len:#x} bytes, more than the board's image area \
                 ({area:#x})"
            ),
        }
    }
}

/// The string that names the images module among a boot loader's modules.
pub const IMAGES_MODULE: &str = "tandem-images";

/// Checks the images module the boot loader describes (`None`: it passed none by that name)
/// against the validated board of `sys` and the hypervisor's loaded image `image` (code, data,
/// `.bss`, boot stack and tables), and says where its bytes go. `Ok(None)` when no image travels
/// beside the hypervisor: the module, if any, is left alone.
pub fn check(
    sys: &System,
    module: Option<Module>,
    image: &PhysRange,
) -> Result<Option<Move>, ModuleError> {
    let area = match sys.board.images {
        Some(area) if area.carrier == ImageCarrier::Multiboot2 => area.range,
        _ => return Err(ModuleError::NotCarried),
    };
    let needed = needed(sys);
    if needed == 0 {
        return Ok(None);
    }
    let Module { start, end } = module.ok_or(ModuleError::Missing { needed })?;
    let Some(len) = end.checked_sub(start) else {
        return Err(ModuleError::Reversed { start, end });
    };
    let range = PhysRange {
        base: crate::addr::HostPhysAddr::new(start),
        size: len,
    };
    if !sys.board.ram.contains(&range) {
        return Err(ModuleError::OutsideRam { start, end });
    }
    if range.overlaps(image) {
        return Err(ModuleError::OverImage { start, end });
    }
    if len < needed {
        return Err(ModuleError::TooShort { len, needed });
    }
    if len > area.size {
        return Err(ModuleError::TooLong {
            len,
            area: area.size,
        });
    }
    Ok(Some(Move {
        from: start,
        to: area.base.raw(),
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::HostPhysAddr;
    use crate::config::{ImageArea, validate};
    use crate::fake::system;

    const AREA: u64 = 0x800_0000;
    /// The hypervisor's loaded image, inside its 1 MiB + 15 MiB range.
    const IMAGE: PhysRange = PhysRange {
        base: HostPhysAddr::new(0x10_0000),
        size: 0x30_0000,
    };

    /// The sample system with its images carried beside: partition a's 0x3000 bytes at offset
    /// 0, partition b's 0x1800 at 0x4000.
    fn carried() -> System {
        let mut sys = system();
        sys.board.images = Some(ImageArea {
            range: PhysRange {
                base: HostPhysAddr::new(AREA),
                size: 0x800_0000,
            },
            carrier: ImageCarrier::Multiboot2,
        });
        sys.partitions[0].image.source = ImageSource::Beside { offset: 0, crc: 1 };
        sys.partitions[0].image.size = 0x3000;
        sys.partitions[1].image.source = ImageSource::Beside {
            offset: 0x4000,
            crc: 2,
        };
        sys.partitions[1].image.size = 0x1800;
        assert_eq!(validate(&sys), Ok(()));
        sys
    }

    fn module(start: u64, end: u64) -> Option<Module> {
        Some(Module { start, end })
    }

    #[test]
    fn the_images_reach_the_end_of_the_last_one() {
        assert_eq!(needed(&carried()), 0x5800);
        assert_eq!(needed(&system()), 0);
    }

    #[test]
    fn a_module_in_ram_beside_the_image_moves_to_the_area() {
        // GRUB puts modules right after the kernel: inside the hypervisor's range, past its
        // image, where nothing lives yet when the module is moved.
        assert_eq!(
            check(&carried(), module(0x40_0000, 0x40_5800), &IMAGE),
            Ok(Some(Move {
                from: 0x40_0000,
                to: AREA,
                len: 0x5800
            }))
        );
        // Over the area itself, or over partition memory, is as good.
        assert!(check(&carried(), module(AREA + 0x1000, AREA + 0x7000), &IMAGE).is_ok());
        assert!(check(&carried(), module(0x100_0000, 0x100_6000), &IMAGE).is_ok());
    }

    #[test]
    fn a_missing_or_impossible_module_is_refused_with_its_reason() {
        let sys = carried();
        assert_eq!(
            check(&sys, None, &IMAGE),
            Err(ModuleError::Missing { needed: 0x5800 })
        );
        assert_eq!(
            check(&sys, module(0x40_5800, 0x40_0000), &IMAGE),
            Err(ModuleError::Reversed {
                start: 0x40_5800,
                end: 0x40_0000
            })
        );
        // Past the board's 256 MiB of RAM, and wrapping past the end of the address space.
        assert_eq!(
            check(&sys, module(0xfff_f000, 0x1000_5000), &IMAGE),
            Err(ModuleError::OutsideRam {
                start: 0xfff_f000,
                end: 0x1000_5000
            })
        );
        assert!(matches!(
            check(&sys, module(u64::MAX - 0x1000, u64::MAX), &IMAGE),
            Err(ModuleError::OutsideRam { .. })
        ));
        assert_eq!(
            check(&sys, module(0x3f_f000, 0x40_5800), &IMAGE),
            Err(ModuleError::OverImage {
                start: 0x3f_f000,
                end: 0x40_5800
            })
        );
        assert_eq!(
            check(&sys, module(0x40_0000, 0x40_5000), &IMAGE),
            Err(ModuleError::TooShort {
                len: 0x5000,
                needed: 0x5800
            })
        );
        assert_eq!(
            check(&sys, module(0x40_0000, 0x40_0000 + 0x800_1000), &IMAGE),
            Err(ModuleError::TooLong {
                len: 0x800_1000,
                area: 0x800_0000
            })
        );
        let missing = ModuleError::Missing { needed: 0x5800 }.to_string();
        assert!(
            missing.contains("no module named `tandem-images`"),
            "{missing}"
        );
    }

    #[test]
    fn without_images_beside_any_module_is_left_alone() {
        let mut sys = carried();
        for p in sys.partitions.iter_mut() {
            p.image.source = ImageSource::Bundle { index: 0 };
        }
        assert_eq!(check(&sys, None, &IMAGE), Ok(None));
        assert_eq!(check(&sys, module(0, u64::MAX), &IMAGE), Ok(None));
        let mut loader = carried();
        if let Some(area) = loader.board.images.as_mut() {
            area.carrier = ImageCarrier::Loader;
        }
        assert_eq!(check(&loader, None, &IMAGE), Err(ModuleError::NotCarried));
    }
}
