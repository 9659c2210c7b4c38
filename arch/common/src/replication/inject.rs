//! Failures injected into a fault-tolerant pair from the boot command line: the primary's CPU
//! killed or stalled, to test failover (`ft-kill2` kills the primary of the second protection
//! epoch, after re-protection); an input corrupted on the backup, to test that a divergence is
//! reported.

/// Where an injected failure kills the primary's CPU, from the boot option
/// `ft-kill=exit:N|sent:K|acked:K|printed:K`: at its Nth deterministic exit boundary, or at one
/// of the output rule's edges for output K (its record sent but not acknowledged; acknowledged
/// but not printed; printed but its `OutputDone` not logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum KillPoint {
    Exit(u64),
    Sent(u64),
    Acked(u64),
    Printed(u64),
}

/// An injected stall of the primary's CPU (`ft-stall=WHERE:N:US`, WHERE as for [`KillPoint`],
/// `exit` and `acked` only): there it does nothing for US microseconds, then carries on; stalled
/// at `acked`, it still has that output to print when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct Stall {
    pub at: KillPoint,
    pub us: u64,
}

/// The failures to inject into fault-tolerant pairs, from the boot command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub kill: Option<KillPoint>,
    /// `ft-kill2=...` (as `ft-kill`): kills the primary of the second protection epoch, the copy
    /// that went live and re-protected the partition onto its spare CPU.
    pub kill2: Option<KillPoint>,
    pub stall: Option<Stall>,
    /// `ft-corrupt=read:K`: the backup's Kth time read (from 1) sees the logged value with a bit
    /// flipped, as a corruption the frame's CRC cannot catch (a memory error after the check)
    /// would give it.
    pub corrupt_read: Option<u64>,
}

impl Injected {
    /// What is injected into the copies of protection epoch `epoch`: the first epoch's
    /// failures, or the second primary's kill.
    pub fn for_epoch(self, epoch: u32) -> Self {
        if epoch == super::FIRST_EPOCH {
            return self;
        }
        Self {
            kill: self.kill2,
            ..Self::default()
        }
    }

    pub fn from_cmdline(cmdline: &str) -> Self {
        let option = |name: &str| {
            cmdline
                .split_whitespace()
                .find_map(|arg| arg.strip_prefix(name)?.strip_prefix('='))
        };
        let point = |at: &str, n: &str| {
            let n = n.parse().ok()?;
            Some(match at {
                "exit" => KillPoint::Exit(n),
                "sent" => KillPoint::Sent(n),
                "acked" => KillPoint::Acked(n),
                "printed" => KillPoint::Printed(n),
                _ => return None,
            })
        };
        let kill_at = |name| {
            option(name).and_then(|v: &str| point(v.split_once(':')?.0, v.split_once(':')?.1))
        };
        let (kill, kill2) = (kill_at("ft-kill"), kill_at("ft-kill2"));
        let stall = option("ft-stall").and_then(|v| {
            let mut parts = v.split(':');
            let at = point(parts.next()?, parts.next()?)?;
            Some(Stall {
                at,
                us: parts.next()?.parse().ok()?,
            })
        });
        let corrupt_read = option("ft-corrupt").and_then(|v| v.strip_prefix("read:")?.parse().ok());
        Self {
            kill,
            kill2,
            stall,
            corrupt_read,
        }
    }
}
