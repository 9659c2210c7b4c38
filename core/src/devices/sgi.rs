//! Software-generated interrupts a guest sends to vCPUs of its own partition: the GICv3
//! ICC_SGI1R_EL1 register (Arm IHI 0069, 12.2.22), decoded against the affinities Tandem gives a
//! partition's vCPUs (vCPU n has Aff0 = n, Aff1-3 = 0), or the GICv2 GICD_SGIR (IHI 0048B,
//! 4.3.15), whose target list names CPU interfaces (vCPU n's is bit n). The value is the guest's:
//! a target that names no vCPU of the partition is dropped, so no value can reach another
//! partition's CPU.

/// The SGI's INTID, bits 27:24.
const INTID_SHIFT: u32 = 24;
/// Aff1 (23:16), Aff2 (39:32) and Aff3 (55:48) of the targets.
const AFF123: u64 = 0xff << 16 | 0xff << 32 | 0xff << 48;
/// Interrupt Routing Mode: every PE but the sender (TargetList and affinities ignored).
const IRM: u64 = 1 << 40;
/// Range selector, bits 47:44: TargetList bit n names Aff0 = RS * 16 + n.
const RS_SHIFT: u32 = 44;
/// The vCPUs a partition can have, as bits of a target set.
const MAX_TARGETS: u64 = 64;

/// An SGI to send: its INTID and the vCPUs of the partition it goes to (bit n = vCPU n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SgiRequest {
    pub intid: u8,
    pub targets: u64,
}

impl SgiRequest {
    /// What a write of `value` to ICC_SGI1R_EL1 by vCPU `me` of a partition of `vcpus` asks.
    pub fn from_sgi1r(value: u64, me: u64, vcpus: u64) -> Self {
        let intid = ((value >> INTID_SHIFT) & 0xf) as u8;
        let all = if vcpus >= MAX_TARGETS {
            u64::MAX
        } else {
            (1 << vcpus) - 1
        };
        let targets = if value & IRM != 0 {
            all & !(1u64.checked_shl(me as u32).unwrap_or(0))
        } else if value & AFF123 != 0 {
            0
        } else {
            let list = value & 0xffff;
            let first = ((value >> RS_SHIFT) & 0xf) * 16;
            list.checked_shl(first as u32).unwrap_or(0) & all
        };
        Self { intid, targets }
    }

    /// What a write of `value` to GICD_SGIR by vCPU `me` of a partition of `vcpus` asks:
    /// SGIINTID in bits 3:0, TargetListFilter in 25:24 (0 the list in CPUTargetList, 23:16; 1
    /// every CPU interface but the sender's; 2 the sender's; 3 reserved, none).
    pub fn from_sgir(value: u32, me: u64, vcpus: u64) -> Self {
        let all = (1u64 << vcpus.min(8)) - 1;
        let me = 1u64.checked_shl(me as u32).unwrap_or(0);
        let targets = match (value >> 24) & 0b11 {
            0 => u64::from((value >> 16) & 0xff) & all,
            1 => all & !me,
            2 => me & all,
            _ => 0,
        };
        Self {
            intid: (value & 0xf) as u8,
            targets,
        }
    }

    /// The vCPU indices targeted, lowest first.
    pub fn vcpus(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_TARGETS as u32).filter(|&v| self.targets & (1 << v) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgi1r(intid: u64, list: u64, rs: u64, aff1: u64, irm: bool) -> u64 {
        intid << 24 | list | rs << 44 | aff1 << 16 | u64::from(irm) << 40
    }

    #[test]
    fn gicv2_sgir_targets_only_the_partitions_vcpus() {
        let sgir = |filter: u32, list: u32, intid: u32| filter << 24 | list << 16 | intid;
        let req = SgiRequest::from_sgir(sgir(0, 0b1111_0110, 3), 0, 2);
        assert_eq!(
            (req.intid, req.targets),
            (3, 0b10),
            "vCPUs 2-7 do not exist"
        );
        assert_eq!(SgiRequest::from_sgir(sgir(1, 0, 5), 1, 3).targets, 0b101);
        assert_eq!(SgiRequest::from_sgir(sgir(2, 0xff, 5), 1, 3).targets, 0b010);
        assert_eq!(SgiRequest::from_sgir(sgir(3, 0xff, 5), 1, 3).targets, 0);
        assert_eq!(SgiRequest::from_sgir(sgir(0, 0, 0x1f), 0, 1).intid, 0xf);
    }

    #[test]
    fn a_target_list_names_vcpus_by_aff0() {
        let r = SgiRequest::from_sgi1r(sgi1r(3, 0b10, 0, 0, false), 0, 2);
        assert_eq!(
            r,
            SgiRequest {
                intid: 3,
                targets: 0b10
            }
        );
        assert_eq!(r.vcpus().collect::<Vec<_>>(), [1]);
        let to_self = SgiRequest::from_sgi1r(sgi1r(15, 0b1, 0, 0, false), 0, 2);
        assert_eq!(to_self.targets, 0b1, "a vCPU may interrupt itself");
    }

    #[test]
    fn routing_mode_one_targets_every_other_vcpu() {
        let r = SgiRequest::from_sgi1r(sgi1r(5, 0, 0, 0, true), 1, 4);
        assert_eq!(r.targets, 0b1101);
    }

    #[test]
    fn targets_outside_the_partition_are_dropped() {
        // vCPUs 2-15 do not exist in a partition of 2.
        let r = SgiRequest::from_sgi1r(sgi1r(6, 0xfffc, 0, 0, false), 0, 2);
        assert_eq!(r.targets, 0);
        // Aff1 = 1, or Aff0 16 and up (RS = 1): no vCPU has that affinity.
        assert_eq!(
            SgiRequest::from_sgi1r(sgi1r(6, 0b10, 0, 1, false), 0, 2).targets,
            0
        );
        assert_eq!(
            SgiRequest::from_sgi1r(sgi1r(6, 0b11, 1, 0, false), 0, 2).targets,
            0
        );
        assert_eq!(SgiRequest::from_sgi1r(!IRM, 0, 8).targets, 0);
        // The largest range selector shifts the list out of every partition.
        assert_eq!(
            SgiRequest::from_sgi1r(sgi1r(1, 0xffff, 15, 0, false), 0, 8).targets,
            0
        );
    }

    #[test]
    fn the_intid_is_four_bits_and_other_bits_do_not_widen_it() {
        let r = SgiRequest::from_sgi1r(u64::MAX, 0, 2);
        assert_eq!(r.intid, 15);
        assert_eq!(r.targets, 0b10, "IRM set: everyone but the sender");
    }
}
