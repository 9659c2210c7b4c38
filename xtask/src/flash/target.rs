//! Where `cargo xtask flash` may write: a file, or a whole disk that nothing on this machine
//! uses. Everything else is refused before a byte is written, and anything that is not already
//! an image file is only overwritten with the user's consent.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What the target is, once it passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A file that does not exist yet, is empty, or already holds a disk or CD image.
    ImageFile,
    /// A file with other contents: overwritten only with consent.
    OtherFile { size: u64 },
    /// A whole disk nothing uses: overwritten only with consent.
    Disk(Disk),
}

/// A whole disk, as sysfs describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Disk {
    /// The kernel's name for it (`sdb`, `mmcblk0`).
    pub name: String,
    pub bytes: u64,
    pub removable: bool,
    /// Vendor and model, where the kernel knows them.
    pub model: String,
}

/// Where the machine's facts come from: the real `/sys` and `/proc`, or a test's copies.
pub struct Host {
    /// `/sys`.
    pub sys: PathBuf,
    /// `/proc/self/mountinfo`'s text.
    pub mountinfo: String,
    /// `/proc/swaps`'s text.
    pub swaps: String,
}

impl Host {
    /// This machine.
    pub fn this() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            mountinfo: fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            swaps: fs::read_to_string("/proc/swaps").unwrap_or_default(),
        }
    }
}

/// Checks `path` as a place to write an image to.
pub fn check(path: &Path, host: &Host) -> Result<Target> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent.filter(|p| !p.is_dir()) {
                bail!(
                    "{}: its folder {} does not exist",
                    path.display(),
                    parent.display()
                );
            }
            return Ok(Target::ImageFile);
        }
        Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
    };
    let kind = meta.file_type();
    if kind.is_file() {
        let looks_like_image = meta.len() == 0 || is_image(path)?;
        return Ok(if looks_like_image {
            Target::ImageFile
        } else {
            Target::OtherFile { size: meta.len() }
        });
    }
    if !kind.is_block_device() {
        bail!(
            "{}: neither a file nor a block device (a disk image goes to a file or a whole disk)",
            path.display()
        );
    }
    let rdev = meta.rdev();
    let devnum = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let swap_devices: Vec<(u32, u32)> = swap_paths(&host.swaps)
        .filter_map(|p| fs::metadata(p).ok())
        .filter(|m| m.file_type().is_block_device())
        .map(|m| (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())))
        .collect();
    check_disk(path, devnum, host, &swap_devices).map(Target::Disk)
}

/// Whether the file at `path` holds a disk image (an MBR's boot signature, or a GPT, which
/// comes with one) or a CD image (ISO 9660's volume descriptor).
fn is_image(path: &Path) -> Result<bool> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut mbr = [0u8; 512];
    let mbr_ok = file.read_exact(&mut mbr).is_ok() && mbr[510..] == [0x55, 0xaa];
    // ECMA-119 8.1: the first volume descriptor is at sector 16 (of 2048 bytes), its
    // identifier "CD001" at byte 1.
    let mut id = [0u8; 5];
    let iso_ok = file.seek(SeekFrom::Start(16 * 2048 + 1)).is_ok()
        && file.read_exact(&mut id).is_ok()
        && &id == b"CD001";
    Ok(mbr_ok || iso_ok)
}

/// The paths `/proc/swaps` lists (after its header line).
fn swap_paths(swaps: &str) -> impl Iterator<Item = &str> {
    swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
}

/// Checks the block device `devnum` (major, minor) at `path`: a whole disk, none of whose
/// partitions is mounted, used as swap (`swap_devices`) or held by another device (LVM,
/// RAID, encryption).
fn check_disk(
    path: &Path,
    devnum: (u32, u32),
    host: &Host,
    swap_devices: &[(u32, u32)],
) -> Result<Disk> {
    let entry = host
        .sys
        .join(format!("dev/block/{}:{}", devnum.0, devnum.1));
    let dir = fs::canonicalize(&entry).with_context(|| {
        format!(
            "{}: the kernel does not list it ({})",
            path.display(),
            entry.display()
        )
    })?;
    let name = file_name(&dir);
    if dir.join("partition").exists() {
        let disk = dir.parent().map(file_name).unwrap_or_default();
        bail!(
            "{}: a partition of {disk}; a bootable image goes to the whole disk (/dev/{disk})",
            path.display()
        );
    }
    // The disk itself and each of its partitions (the subfolders with a `dev` file).
    let mut parts = vec![(name.clone(), dir.clone())];
    for sub in fs::read_dir(&dir)?.flatten() {
        if sub.path().join("partition").exists() {
            parts.push((file_name(&sub.path()), sub.path()));
        }
    }
    for (part, part_dir) in &parts {
        let Some(num) = devnum_of(part_dir) else {
            continue;
        };
        if let Some(mount) = mounted_at(&host.mountinfo, num, part) {
            if mount == "/" {
                bail!(
                    "{}: the system disk ({part} holds this machine's root filesystem)",
                    path.display()
                );
            }
            bail!(
                "{}: {part} is mounted at {mount}; unmount it first (umount {mount})",
                path.display()
            );
        }
        if swap_devices.contains(&num) {
            bail!(
                "{}: {part} is in use as swap (swapoff /dev/{part})",
                path.display()
            );
        }
        let holders: Vec<String> = fs::read_dir(part_dir.join("holders"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|h| file_name(&h.path()))
            .collect();
        if !holders.is_empty() {
            bail!(
                "{}: {part} is in use by {} (LVM, RAID or encryption)",
                path.display(),
                holders.join(", ")
            );
        }
    }
    let read = |file: &str| fs::read_to_string(dir.join(file)).unwrap_or_default();
    let model = [read("device/vendor"), read("device/model")]
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Disk {
        bytes: read("size").trim().parse::<u64>().unwrap_or(0) * 512,
        removable: read("removable").trim() == "1",
        model,
        name,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The device number in a sysfs block folder's `dev` file (`MAJOR:MINOR`).
fn devnum_of(dir: &Path) -> Option<(u32, u32)> {
    let text = fs::read_to_string(dir.join("dev")).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Where `mountinfo` has device `num` (kernel name `name`) mounted, if anywhere: by the
/// device number (field 3), or by its source (after ` - ` and the filesystem type), which is
/// what names the device for filesystems with device numbers of their own (btrfs).
fn mounted_at(mountinfo: &str, num: (u32, u32), name: &str) -> Option<String> {
    let wanted = format!("{}:{}", num.0, num.1);
    let source = format!("/dev/{name}");
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let by_number = fields.get(2) == Some(&wanted.as_str());
        let after = fields.iter().position(|f| *f == "-")?;
        let by_source = fields.get(after + 2) == Some(&source.as_str());
        (by_number || by_source).then(|| fields.get(4).unwrap_or(&"?").to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys` with disk `sdb` (8:16) and its partition `sdb1` (8:17).
    fn fake_sys(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("tandem-flash-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let disk = root.join("devices/usb/block/sdb");
        fs::create_dir_all(disk.join("sdb1/holders")).unwrap();
        fs::create_dir_all(disk.join("holders")).unwrap();
        fs::create_dir_all(disk.join("device")).unwrap();
        fs::write(disk.join("dev"), "8:16\n").unwrap();
        fs::write(disk.join("size"), "30310400\n").unwrap();
        fs::write(disk.join("removable"), "1\n").unwrap();
        fs::write(disk.join("device/vendor"), "SanDisk \n").unwrap();
        fs::write(disk.join("device/model"), "Cruzer Blade\n").unwrap();
        fs::write(disk.join("sdb1/dev"), "8:17\n").unwrap();
        fs::write(disk.join("sdb1/partition"), "1\n").unwrap();
        fs::create_dir_all(root.join("dev/block")).unwrap();
        std::os::unix::fs::symlink(&disk, root.join("dev/block/8:16")).unwrap();
        std::os::unix::fs::symlink(disk.join("sdb1"), root.join("dev/block/8:17")).unwrap();
        root
    }

    fn host(sys: PathBuf, mountinfo: &str) -> Host {
        Host {
            sys,
            mountinfo: mountinfo.into(),
            swaps: String::new(),
        }
    }

    const ROOT_ON_SDA: &str = "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n";

    #[test]
    fn an_unused_disk_is_accepted_with_its_facts() {
        let h = host(fake_sys("free"), ROOT_ON_SDA);
        let disk = check_disk(Path::new("/dev/sdb"), (8, 16), &h, &[]).unwrap();
        assert_eq!(
            disk,
            Disk {
                name: "sdb".into(),
                bytes: 30310400 * 512,
                removable: true,
                model: "SanDisk Cruzer Blade".into(),
            }
        );
    }

    #[test]
    fn a_disk_with_a_mounted_partition_is_refused() {
        let mounts = format!("{ROOT_ON_SDA}40 22 8:17 / /media/stick rw - vfat /dev/sdb1 rw\n");
        let h = host(fake_sys("mounted"), &mounts);
        let e = check_disk(Path::new("/dev/sdb"), (8, 16), &h, &[]).unwrap_err();
        assert!(
            e.to_string().contains("sdb1 is mounted at /media/stick"),
            "{e}"
        );
    }

    #[test]
    fn the_system_disk_is_refused_even_when_its_filesystem_has_its_own_device_number() {
        // btrfs reports 0:NN in field 3; the source names the partition.
        let mounts = "22 1 0:31 / / rw - btrfs /dev/sdb1 rw\n";
        let h = host(fake_sys("system"), mounts);
        let e = check_disk(Path::new("/dev/sdb"), (8, 16), &h, &[]).unwrap_err();
        assert!(e.to_string().contains("the system disk"), "{e}");
    }

    #[test]
    fn a_partition_held_by_lvm_or_swap_is_refused() {
        let sys = fake_sys("held");
        let h = host(sys.clone(), ROOT_ON_SDA);
        let e = check_disk(Path::new("/dev/sdb"), (8, 16), &h, &[(8, 17)]).unwrap_err();
        assert!(e.to_string().contains("swap"), "{e}");
        fs::create_dir_all(sys.join("devices/usb/block/sdb/sdb1/holders/dm-0")).unwrap();
        let e = check_disk(Path::new("/dev/sdb"), (8, 16), &h, &[]).unwrap_err();
        assert!(e.to_string().contains("in use by dm-0"), "{e}");
    }

    #[test]
    fn a_partition_is_refused_in_favour_of_its_disk() {
        let h = host(fake_sys("part"), ROOT_ON_SDA);
        let e = check_disk(Path::new("/dev/sdb1"), (8, 17), &h, &[]).unwrap_err();
        assert!(e.to_string().contains("whole disk (/dev/sdb)"), "{e}");
    }

    #[test]
    fn files_are_told_apart_by_their_contents() {
        let dir = std::env::temp_dir().join(format!("tandem-flash-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let h = host(dir.clone(), "");
        let text = dir.join("notes.txt");
        fs::write(&text, "keep me").unwrap();
        assert_eq!(check(&text, &h).unwrap(), Target::OtherFile { size: 7 });
        let mut disk = vec![0u8; 1024];
        disk[510..512].copy_from_slice(&[0x55, 0xaa]);
        fs::write(dir.join("old.img"), &disk).unwrap();
        assert_eq!(check(&dir.join("old.img"), &h).unwrap(), Target::ImageFile);
        assert_eq!(check(&dir.join("new.img"), &h).unwrap(), Target::ImageFile);
        let e = check(&dir.join("missing/new.img"), &h).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
