//! The hypervisor fault models of the recovery campaigns (recovery.md 5.3): one word names each,
//! for `--campaign` and for the hypervisor's `inject=model:` option alike.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Model {
    /// The hypervisor stops at a random point (PC ← 0 or a panic).
    Failstop,
    /// One bit of one register flips.
    Register,
    /// One bit of the next instruction bytes flips.
    Code,
    /// One bit of the hypervisor's data flips.
    Memory,
    /// A CPU spins with interrupts masked.
    Hang,
}

impl Model {
    pub const ALL: [Model; 5] = [
        Model::Failstop,
        Model::Register,
        Model::Code,
        Model::Memory,
        Model::Hang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::Failstop => "failstop",
            Model::Register => "register",
            Model::Code => "code",
            Model::Memory => "memory",
            Model::Hang => "hang",
        }
    }

    pub fn parse(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The published microreboot (ReHype) and microreset (NiLiHype) success rates in percent,
    /// at most one VM affected (DSN'18 Fig. 2), where the model was measured.
    pub fn references(self) -> Option<(f64, f64)> {
        match self {
            Model::Failstop => Some((98.9, 98.6)),
            Model::Register => Some((96.3, 94.5)),
            Model::Code => Some((90.7, 88.7)),
            Model::Memory | Model::Hang => None,
        }
    }

    /// ReHype's 3AppVM outcome breakdown in percent, not manifested / SDC / detected
    /// (DSN'18 §VI), where the model was measured.
    pub fn outcome_references(self) -> Option<[f64; 3]> {
        match self {
            Model::Register => Some([74.8, 5.6, 19.6]),
            Model::Code => Some([35.0, 12.1, 52.9]),
            // Every failstop fault is detected by construction.
            Model::Failstop | Model::Memory | Model::Hang => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_parses_from_its_name() {
        for m in Model::ALL {
            assert_eq!(Model::parse(m.name()), Some(m));
        }
        assert_eq!(Model::parse("ft-kill"), None);
    }
}
