//! An emulated Ethernet switch joining the boards' NICs and the witness: a frame addressed to a
//! station of the segment reaches that station's port, any other frame (broadcast, unknown)
//! every other port, unless the link is cut. Forwarding by address is what a real segment's
//! switch does, and a board that is not running then gets no frames it would have to drop: the
//! loaded x86 pair's log collapsed into resends (22,442 frames for 805 records) while a hub
//! flooded every frame to a spare board's port that nobody had bound yet. Each port is a pair of UDP sockets on
//! the loopback, one raw Ethernet frame per datagram, the way Bochs's `ethmod=socket` (it binds
//! `ethdev` and sends to `ethdev + 1`) and QEMU's `-netdev dgram` talk; the witness joins the
//! same way. Cuts are how tests take links down and up again; every frame is also written to a
//! pcap file for whoever looks into a run.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tandem_core::config::Mac;

/// Where one port's peer and the hub meet: the peer binds `endpoint` and sends to `hub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAddr {
    pub endpoint: u16,
    pub hub: u16,
}

/// Frames and bytes that went from one port to another, frames a cut dropped, and what an
/// impairment did to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub frames: u64,
    pub bytes: u64,
    pub cut: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
}

/// A bad cable: per mille of frames lost, delivered twice, or delivered with one bit flipped
/// (past the Ethernet header, so the frame still reaches its station and the receiver's checks
/// must catch it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Impairment {
    pub loss: u16,
    pub duplicate: u16,
    pub corrupt: u16,
}

struct Shared {
    /// Unordered pairs of ports whose link is down.
    cuts: Mutex<HashSet<(usize, usize)>>,
    /// What every link does to the frames it carries, and the generator that decides (xorshift,
    /// fixed seed: which frames suffer still varies with their timing).
    impairment: Mutex<(Impairment, u64)>,
    /// `traffic[from][to]`.
    traffic: Mutex<Vec<Vec<Traffic>>>,
    capture: Mutex<Option<BufWriter<File>>>,
    stop: AtomicBool,
}

/// A running hub; stops when dropped.
pub struct Hub {
    ports: Vec<PortAddr>,
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// How long a port's thread waits for a frame before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// A port whose `endpoint` is free now (the peer binds it later) and whose hub socket is bound.
fn open_port() -> Result<(PortAddr, UdpSocket)> {
    for _ in 0..64 {
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        let endpoint = probe.local_addr()?.port();
        let Some(hub) = endpoint.checked_add(1) else {
            continue;
        };
        if let Ok(socket) = UdpSocket::bind(("127.0.0.1", hub)) {
            drop(probe);
            return Ok((PortAddr { endpoint, hub }, socket));
        }
    }
    bail!("no two adjacent free UDP ports on the loopback for the hub")
}

impl Hub {
    /// A hub with a port for each of `stations`, capturing every frame into `capture` (pcap).
    pub fn start(stations: &[Mac], capture: &Path) -> Result<Self> {
        let ports = stations.len();
        let stations: Arc<Vec<Mac>> = Arc::new(stations.to_vec());
        let opened = (0..ports)
            .map(|_| open_port())
            .collect::<Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            cuts: Mutex::new(HashSet::new()),
            impairment: Mutex::new((Impairment::default(), 0x9e37_79b9_7f4a_7c15)),
            traffic: Mutex::new(vec![vec![Traffic::default(); ports]; ports]),
            capture: Mutex::new(Some(pcap(capture)?)),
            stop: AtomicBool::new(false),
        });
        let addrs: Vec<PortAddr> = opened.iter().map(|(a, _)| *a).collect();
        let senders = opened
            .iter()
            .map(|(a, s)| Ok((s.try_clone()?, a.endpoint)))
            .collect::<Result<Vec<_>>>()?;
        let senders = Arc::new(senders);
        let threads = opened
            .into_iter()
            .enumerate()
            .map(|(from, (_, socket))| {
                let shared = Arc::clone(&shared);
                let senders = Arc::clone(&senders);
                let stations = Arc::clone(&stations);
                thread::spawn(move || forward(from, &socket, &senders, &stations, &shared))
            })
            .collect();
        Ok(Self {
            ports: addrs,
            shared,
            threads,
        })
    }

    pub fn port(&self, index: usize) -> PortAddr {
        self.ports[index]
    }

    /// Takes the link between ports `a` and `b` down (both directions).
    pub fn cut(&self, a: usize, b: usize) {
        lock(&self.shared.cuts).insert(pair(a, b));
    }

    /// Makes every link impaired as `impairment` says (the default: a good cable).
    pub fn impair(&self, impairment: Impairment) {
        lock(&self.shared.impairment).0 = impairment;
    }

    /// Brings every link of the hub back up.
    pub fn heal(&self) {
        lock(&self.shared.cuts).clear();
    }

    /// What went from each port to each other so far: `traffic()[from][to]`.
    pub fn traffic(&self) -> Vec<Vec<Traffic>> {
        lock(&self.shared.traffic).clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(mut file) = lock(&self.shared.capture).take() {
            let _ = file.flush();
        }
    }
}

/// A poisoned lock only means a port's thread panicked; the data is still the best there is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn forward(
    from: usize,
    socket: &UdpSocket,
    to: &[(UdpSocket, u16)],
    stations: &[Mac],
    shared: &Shared,
) {
    let _ = socket.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 2048];
    while !shared.stop.load(Ordering::Acquire) {
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let frame = &buf[..len];
        record(shared, frame);
        let station = frame
            .get(..6)
            .and_then(|dst| stations.iter().position(|m| m.0 == dst));
        let ports = to
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != from && station.is_none_or(|s| s == *i));
        for (index, (sender, endpoint)) in ports {
            let cut = lock(&shared.cuts).contains(&pair(from, index));
            let mut traffic = lock(&shared.traffic);
            let t = &mut traffic[from][index];
            if cut {
                t.cut += 1;
                continue;
            }
            let (copies, flip) = fate(shared, len);
            t.lost += u64::from(copies == 0);
            t.duplicated += u64::from(copies == 2);
            t.corrupted += u64::from(flip.is_some() && copies > 0);
            t.frames += u64::from(copies);
            t.bytes += len as u64 * u64::from(copies);
            drop(traffic);
            let mut out = [0u8; 2048];
            out[..len].copy_from_slice(frame);
            if let Some(bit) = flip {
                out[bit / 8] ^= 1 << (bit % 8);
            }
            for _ in 0..copies {
                // A peer not started yet, or gone, is a cable with nothing at its end.
                let _ = sender.send_to(&out[..len], ("127.0.0.1", *endpoint));
            }
        }
    }
}

/// What the impairment does to a frame of `len` bytes: how many copies arrive (0 to 2), and
/// which bit of them is flipped, if one is.
fn fate(shared: &Shared, len: usize) -> (u8, Option<usize>) {
    let mut guard = lock(&shared.impairment);
    let (impairment, state) = &mut *guard;
    let mut roll = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 1000) as u16
    };
    const HEADER: usize = 14;
    let copies = match (roll() < impairment.loss, roll() < impairment.duplicate) {
        (true, _) => 0,
        (false, true) => 2,
        (false, false) => 1,
    };
    let flip = (roll() < impairment.corrupt && len > HEADER).then(|| {
        let byte = HEADER + usize::from(roll()) % (len - HEADER);
        byte * 8 + usize::from(roll()) % 8
    });
    (copies, flip)
}

/// A pcap file (libpcap format, Ethernet link type) for the hub's frames.
fn pcap(path: &Path) -> Result<BufWriter<File>> {
    let mut file =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    const MAGIC: u32 = 0xa1b2_c3d4;
    const ETHERNET: u32 = 1;
    file.write_all(&MAGIC.to_le_bytes())?;
    file.write_all(&2u16.to_le_bytes())?;
    file.write_all(&4u16.to_le_bytes())?;
    file.write_all(&0i32.to_le_bytes())?;
    file.write_all(&0u32.to_le_bytes())?;
    file.write_all(&65535u32.to_le_bytes())?;
    file.write_all(&ETHERNET.to_le_bytes())?;
    Ok(file)
}

fn record(shared: &Shared, frame: &[u8]) {
    let mut capture = lock(&shared.capture);
    let Some(file) = capture.as_mut() else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let len = frame.len() as u32;
    let _ = (|| -> std::io::Result<()> {
        file.write_all(&(now.as_secs() as u32).to_le_bytes())?;
        file.write_all(&now.subsec_micros().to_le_bytes())?;
        file.write_all(&len.to_le_bytes())?;
        file.write_all(&len.to_le_bytes())?;
        file.write_all(frame)
    })();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: PortAddr) -> UdpSocket {
        let s = UdpSocket::bind(("127.0.0.1", addr.endpoint)).unwrap();
        s.connect(("127.0.0.1", addr.hub)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    }

    #[test]
    fn frames_reach_their_station_or_every_other_port_unless_their_link_is_cut() {
        let dir = std::env::temp_dir().join(format!("tandem-hub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stations = [1, 2, 3].map(|i| Mac([2, 0, 0, 0, 0, i]));
        let hub = Hub::start(&stations, &dir.join("hub.pcap")).unwrap();
        let [a, b, c] = [0, 1, 2].map(|i| peer(hub.port(i)));
        let mut buf = [0u8; 64];
        a.send(b"to all").unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 6);
        assert_eq!(c.recv(&mut buf).unwrap(), 6);
        let mut to_c = stations[2].0.to_vec();
        to_c.extend_from_slice(b"for c");
        a.send(&to_c).unwrap();
        assert_eq!(c.recv(&mut buf).unwrap(), to_c.len());
        assert!(b.recv(&mut buf).is_err(), "b got a frame for c");
        hub.cut(0, 1);
        a.send(b"only c").unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"only c");
        assert!(b.recv(&mut buf).is_err(), "a cut link carried a frame");
        hub.heal();
        b.send(b"back").unwrap();
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
        let t = hub.traffic();
        assert_eq!((t[0][1].frames, t[0][1].cut, t[0][2].frames), (1, 1, 3));
        hub.impair(Impairment {
            loss: 0,
            duplicate: 1000,
            corrupt: 1000,
        });
        let frame = [0x5a; 32];
        b.send(&frame).unwrap();
        for _ in 0..2 {
            let n = a.recv(&mut buf).unwrap();
            let flipped: u32 = buf[..n]
                .iter()
                .zip(&frame)
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            assert_eq!((n, flipped), (32, 1), "one bit flipped past the header");
            assert_eq!(buf[..14], frame[..14]);
        }
        hub.impair(Impairment {
            loss: 1000,
            ..Impairment::default()
        });
        b.send(b"gone").unwrap();
        assert!(a.recv(&mut buf).is_err(), "a lossy link carried a frame");
        drop(hub);
        let capture = std::fs::read(dir.join("hub.pcap")).unwrap();
        // The header, and a record of 16 bytes around each frame sent: 6 + 11 + 6 + 4 + 32 + 4.
        assert_eq!(capture.len(), 24 + 6 * 16 + 6 + 11 + 6 + 4 + 32 + 4);
    }
}
