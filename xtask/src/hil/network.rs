//! The stand-in rig's network: a switch joining its emulated boards and a witness, both on the
//! loopback ([`crate::cluster::hub`], [`crate::witness`]), fresh for each scenario.

use std::path::Path;

use anyhow::Result;
use tandem_core::config::Mac;

use super::rig::Rig;
use crate::cluster::hub::{Hub, PortAddr};
use crate::witness::{Witness, parse_mac};

pub struct Network {
    /// Each emulated board's name, address and port on the switch.
    stations: Vec<(String, Mac, PortAddr)>,
    witness: Option<Witness>,
    // Dropped last: the witness's port is on it.
    _hub: Hub,
}

impl Network {
    /// The rig's network for a scenario on the boards `names`, if any of them is on it, with its
    /// capture and the witness's state in `dir`.
    pub fn start(rig: &Rig, names: &[&str], dir: &Path) -> Result<Option<Self>> {
        let Some(network) = &rig.file.network else {
            return Ok(None);
        };
        let boards = rig
            .file
            .boards
            .iter()
            .filter(|b| names.contains(&b.name.as_str()))
            .filter_map(|b| {
                let mac = b.mac.as_deref()?;
                Some(parse_mac(mac).map(|mac| (b.name.clone(), mac)))
            })
            .collect::<Result<Vec<_>>>()?;
        if boards.is_empty() {
            return Ok(None);
        }
        std::fs::create_dir_all(dir)?;
        let macs: Vec<Mac> = boards.iter().map(|(_, m)| *m).collect();
        let (hub, witness, _) =
            crate::cluster::run::network(&macs, parse_mac(&network.witness)?, dir)?;
        let stations = boards
            .into_iter()
            .enumerate()
            .map(|(i, (name, mac))| (name, mac, hub.port(i)))
            .collect();
        Ok(Some(Self {
            stations,
            witness: Some(witness),
            _hub: hub,
        }))
    }

    /// Board `name`'s address and port, if it is on the network.
    pub fn station(&self, name: &str) -> Option<(Mac, PortAddr)> {
        self.stations
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, mac, port)| (mac, port))
    }

    /// Stops the witness; its decisions, one a line.
    pub fn stop(mut self) -> Result<Vec<String>> {
        self.witness.take().map_or(Ok(Vec::new()), Witness::stop)
    }
}
