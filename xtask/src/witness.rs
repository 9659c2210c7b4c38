//! `cargo xtask witness`: the witness server that decides which side of a pair across boards goes
//! live, a program any machine on the boards' network can run.
//!
//! It answers the witness requests ([`tandem_ft::witness`]) that reach it in Ethernet frames on
//! channel 1 ([`tandem_ft::link::ether`]), sent to its MAC or to everyone, and replies to the
//! sender's MAC. Every decision is appended to the state file as a text line and fsync'd before
//! the answer that reveals it is sent, so a witness that restarts (or crashes and is started
//! again) never names a different winner. At start it rebuilds its register from that file.
//!
//! The frames travel one per UDP datagram, the way emulator NICs are joined to a hub (Bochs's
//! `ethmod=socket`, QEMU's `-netdev dgram`, [`crate::cluster::hub`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tandem_ft::arbiter::Side;
use tandem_ft::link::ether::{self, Channel, Mac};
use tandem_ft::witness::{Answer, Ask, CLUSTERS, Claimed, Register, Request, RestoreReason};

/// How long the server waits for a frame before it looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Where the witness's frames come from and go to: it binds `bind` and sends to `remote`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attach {
    pub bind: SocketAddr,
    pub remote: SocketAddr,
}

/// Parses `udp:LOCAL_PORT:REMOTE_PORT` (both on 127.0.0.1) or
/// `udp:BIND_ADDR:LOCAL_PORT:REMOTE_ADDR:REMOTE_PORT` (IPv4).
pub fn parse_attach(text: &str) -> Result<Attach> {
    let usage = || {
        anyhow!(
            "`{text}`: expected udp:LOCAL_PORT:REMOTE_PORT or udp:BIND_ADDR:LOCAL_PORT:REMOTE_ADDR:REMOTE_PORT"
        )
    };
    let fields: Vec<&str> = text.split(':').collect();
    let addr = |ip: &str, port: &str| -> Result<SocketAddr> {
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("`{ip}` is not an IP address"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("`{port}` is not a port"))?;
        Ok(SocketAddr::new(ip, port))
    };
    let localhost = Ipv4Addr::LOCALHOST.to_string();
    let (bind, remote) = match fields.as_slice() {
        ["udp", local, remote] => (addr(&localhost, local)?, addr(&localhost, remote)?),
        ["udp", bind_ip, local, remote_ip, remote] => {
            (addr(bind_ip, local)?, addr(remote_ip, remote)?)
        }
        _ => return Err(usage()),
    };
    Ok(Attach { bind, remote })
}

/// Parses a MAC address for the command line.
pub fn parse_mac(text: &str) -> Result<Mac> {
    Mac::parse(text).ok_or_else(|| anyhow!("`{text}` is not a MAC address (xx:xx:xx:xx:xx:xx)"))
}

/// The witness as the cluster harness runs it next to the emulators: on the loopback, binding
/// `endpoint` and sending to `hub` (a port of [`crate::cluster::hub`]).
#[derive(Clone, Debug)]
pub struct WitnessOptions {
    pub state: PathBuf,
    pub mac: Mac,
    pub endpoint: u16,
    pub hub: u16,
}

/// A witness serving on a thread of its own until [`Witness::stop`]. Stopping it and starting it
/// again with the same state file is a witness restart.
pub struct Witness {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(Result<()>, Vec<String>)>,
}

impl Witness {
    /// Restores the register from the state file and starts serving; a corrupt state file or a
    /// port in use fails here rather than on the thread.
    pub fn start(options: &WitnessOptions) -> Result<Witness> {
        let attach = Attach {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, options.endpoint)),
            remote: SocketAddr::from((Ipv4Addr::LOCALHOST, options.hub)),
        };
        let mac = options.mac;
        let mut server = Server::open(&options.state, mac, attach, Log::Keep(Vec::new()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let result = server.serve(&flag);
            (result, server.log.into_lines())
        });
        Ok(Witness { stop, thread })
    }

    /// Stops the witness; returns its log (a line per decision, answer and malformed frame, and
    /// a summary), or the error that stopped it earlier.
    pub fn stop(self) -> Result<Vec<String>> {
        self.stop.store(true, Ordering::Release);
        let (result, lines) = self
            .thread
            .join()
            .map_err(|_| anyhow!("the witness's thread panicked"))?;
        result.context("the witness stopped by itself")?;
        Ok(lines)
    }
}

/// `cargo xtask witness`: serves until the process is killed. Nothing is lost by killing it:
/// every decision it answered is on disk already.
pub fn run(state: PathBuf, mac: Mac, attach: Attach) -> Result<()> {
    Server::open(&state, mac, attach, Log::Print)?.serve(&AtomicBool::new(false))
}

/// Where the server's log lines go.
enum Log {
    /// To stdout (the command).
    Print,
    /// Into memory (a witness the cluster harness runs, which reports them with the run).
    Keep(Vec<String>),
}

impl Log {
    fn line(&mut self, line: String) {
        match self {
            Log::Print => println!("{line}"),
            Log::Keep(lines) => lines.push(line),
        }
    }

    fn into_lines(self) -> Vec<String> {
        match self {
            Log::Print => Vec::new(),
            Log::Keep(lines) => lines,
        }
    }
}

/// What a witness saw, for its closing summary.
#[derive(Clone, Copy, Debug, Default)]
struct Served {
    answers: u64,
    decisions: u64,
    /// Frames with our EtherType for us that are no valid witness request.
    malformed: u64,
    /// Frames not for the witness: other EtherTypes, other channels, other stations.
    ignored: u64,
    /// Claims left unanswered because the register holds [`CLUSTERS`] clusters already.
    refused_full: u64,
}

/// A witness with its socket bound and its register restored.
struct Server {
    mac: Mac,
    socket: UdpSocket,
    remote: SocketAddr,
    register: Register,
    state: StateFile,
    served: Served,
    log: Log,
}

impl Server {
    fn open(state: &Path, mac: Mac, attach: Attach, mut log: Log) -> Result<Server> {
        let (register, state) = StateFile::open(state)?;
        let socket = UdpSocket::bind(attach.bind)
            .with_context(|| format!("binding the witness's UDP socket to {}", attach.bind))?;
        socket
            .set_read_timeout(Some(POLL))
            .context("setting the witness socket's read timeout")?;
        log.line(format!(
            "witness {} on {} (sending to {}), state {} ({} decisions)",
            mac.text(),
            socket.local_addr()?,
            attach.remote,
            state.path.display(),
            state.decisions,
        ));
        Ok(Server {
            mac,
            socket,
            remote: attach.remote,
            register,
            state,
            served: Served::default(),
            log,
        })
    }

    /// Answers until `stop` is set. Errors end it: a decision that cannot be persisted must not
    /// be answered, nor anything after it, since the register has moved on already.
    fn serve(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Acquire) {
            let Some(n) = receive(&self.socket, &mut buf)? else {
                continue;
            };
            let Some(reply) = self.on_frame(&buf[..n])? else {
                continue;
            };
            // A lost answer is asked for again: the network's trouble does not stop the witness.
            if let Err(e) = self.socket.send_to(&reply, self.remote) {
                let line = format!("witness: sending an answer to {}: {e}", self.remote);
                self.log.line(line);
            }
        }
        let s = self.served;
        self.log.line(format!(
            "witness stopped: {} answers, {} decisions, {} malformed, {} ignored, {} refused (full)",
            s.answers, s.decisions, s.malformed, s.ignored, s.refused_full
        ));
        Ok(())
    }

    /// Handles one received frame; returns the reply frame to send, if any.
    fn on_frame(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(frame) = ether::decode(bytes) else {
            if bytes.get(12..14) == Some(&ether::ETHERTYPE.to_be_bytes()[..]) {
                self.malformed(bytes, "bad channel or length");
            } else {
                self.served.ignored += 1;
            }
            return Ok(None);
        };
        if frame.channel != Channel::Witness || !frame.is_for(self.mac) {
            self.served.ignored += 1;
            return Ok(None);
        }
        // A reply to a group address would reach every station.
        if frame.src.0[0] & 1 != 0 {
            self.malformed(bytes, "group source address");
            return Ok(None);
        }
        let Some(request) = Request::decode(frame.payload) else {
            self.malformed(bytes, "not a witness request");
            return Ok(None);
        };
        let from = frame.src;
        let Some(answer) = self.answer(request, from)? else {
            return Ok(None);
        };
        let mut reply = vec![0u8; ether::MIN_FRAME.max(ether::HEADER + answer.len())];
        let n = ether::encode(from, self.mac, Channel::Witness, &answer, &mut reply)
            .context("an answer always fits a frame")?;
        reply.truncate(n);
        Ok(Some(reply))
    }

    /// Decides, persists the decision, logs, and returns the answer's bytes (`None`: the
    /// register is full and the asker must wait).
    fn answer(&mut self, request: Request, from: Mac) -> Result<Option<Vec<u8>>> {
        let Ok((answer, decided)) = self.register.handle(request) else {
            self.served.refused_full += 1;
            self.log.line(format!(
                "witness: {} {}: register full ({CLUSTERS} clusters), no answer",
                from.text(),
                describe(&request)
            ));
            return Ok(None);
        };
        if let Some(claim) = decided {
            self.state.append(claim)?;
            self.served.decisions += 1;
            let line = format!("witness: decided {} for {}", claim_line(claim), from.text());
            self.log.line(line);
        }
        self.served.answers += 1;
        self.log.line(format!(
            "witness: {} {} -> {}",
            from.text(),
            describe(&request),
            describe_answer(&answer)
        ));
        Ok(Some(answer.encode().to_vec()))
    }

    fn malformed(&mut self, bytes: &[u8], why: &str) {
        self.served.malformed += 1;
        let src = bytes
            .get(6..12)
            .and_then(|m| <[u8; 6]>::try_from(m).ok())
            .map_or_else(|| "?".into(), |m| Mac(m).text().to_string());
        self.log.line(format!(
            "witness: malformed frame #{} ({} bytes from {src}): {why}",
            self.served.malformed,
            bytes.len()
        ));
    }
}

/// One datagram, or `None` when the poll interval passed without one.
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> Result<Option<usize>> {
    match socket.recv_from(buf) {
        Ok((n, _)) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).context("receiving on the witness's socket"),
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Primary => "primary",
        Side::Backup => "backup",
    }
}

fn describe(request: &Request) -> String {
    let what = match request.ask {
        Ask::Claim(side) => format!("claim {}", side_name(side)),
        Ask::Query => "query".into(),
    };
    format!(
        "{what} cluster=0x{:08x} epoch={}",
        request.cluster, request.epoch
    )
}

fn describe_answer(answer: &Answer) -> String {
    let holder = answer.holder.map_or("nobody", side_name);
    let stale = if answer.current > answer.epoch {
        " (stale)"
    } else {
        ""
    };
    format!("holder={holder} current={}{stale}", answer.current)
}

/// The state file's line for a decision.
fn claim_line(claim: Claimed) -> String {
    format!(
        "claim cluster=0x{:08x} epoch={} side={}",
        claim.cluster,
        claim.epoch,
        side_name(claim.side)
    )
}

/// Reads a line written by [`claim_line`]; the error says what is wrong with it.
fn parse_claim(line: &str) -> Result<Claimed, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let ["claim", cluster, epoch, side] = fields.as_slice() else {
        return Err("expected `claim cluster=0x... epoch=N side=primary|backup`".into());
    };
    let value = |field: &str, key: &str| {
        field
            .strip_prefix(key)
            .ok_or_else(|| format!("expected `{key}...`, found `{field}`"))
            .map(str::to_owned)
    };
    let cluster = value(cluster, "cluster=0x")?;
    let cluster =
        u32::from_str_radix(&cluster, 16).map_err(|e| format!("cluster `{cluster}`: {e}"))?;
    let epoch = value(epoch, "epoch=")?;
    let epoch = epoch
        .parse::<u32>()
        .map_err(|e| format!("epoch `{epoch}`: {e}"))?;
    if epoch == 0 {
        return Err("epoch 0: epochs start at 1".into());
    }
    let side = match value(side, "side=")?.as_str() {
        "primary" => Side::Primary,
        "backup" => Side::Backup,
        other => return Err(format!("side `{other}`: expected primary or backup")),
    };
    Ok(Claimed {
        cluster,
        epoch,
        side,
    })
}

/// The decisions file, open for appending.
struct StateFile {
    file: File,
    path: PathBuf,
    decisions: usize,
}

impl StateFile {
    /// Reads the decisions in `path` (none if it does not exist) into a register and opens the
    /// file for appending. A line that is not one the witness writes refuses the start: guessing
    /// past it could name a second winner.
    fn open(path: &Path) -> Result<(Register, StateFile)> {
        let (text, existed) = match fs::read(path) {
            Ok(bytes) => (
                String::from_utf8(bytes)
                    .map_err(|e| anyhow!("{}: not text: {e}; refusing to start", path.display()))?,
                true,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (String::new(), false),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let claims = parse_state(&text).map_err(|(line, why)| {
            anyhow!("{}:{line}: {why}; refusing to start", path.display())
        })?;
        let register = Register::restore(claims.iter().map(|&(_, c)| c)).map_err(|e| {
            let line = claims[e.index].0;
            let why = match e.reason {
                RestoreReason::Full => format!("more than {CLUSTERS} clusters"),
                RestoreReason::NotNewer { held } => format!(
                    "epoch {held} of that cluster is claimed on an earlier line; the witness \
                     only ever records a newer one"
                ),
            };
            anyhow!("{}:{line}: {why}; refusing to start", path.display())
        })?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} for appending", path.display()))?;
        if !existed {
            sync_parent(path)?;
        }
        let state = StateFile {
            file,
            path: path.to_path_buf(),
            decisions: claims.len(),
        };
        Ok((register, state))
    }

    /// Appends a decision and waits until it is on disk.
    fn append(&mut self, claim: Claimed) -> Result<()> {
        writeln!(self.file, "{}", claim_line(claim))
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("persisting a decision to {}", self.path.display()))?;
        self.decisions += 1;
        Ok(())
    }
}

/// The decisions in a state file's text, each with its line number, or the first bad line's
/// number and what is wrong with it.
fn parse_state(text: &str) -> Result<Vec<(usize, Claimed)>, (usize, String)> {
    let mut claims = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let number = claims.len() + 1;
        let Some((line, after)) = rest.split_once('\n') else {
            return Err((
                number,
                "the last line is incomplete (no newline): the witness stopped while writing \
                 it, so never answered it; remove that line"
                    .into(),
            ));
        };
        let claim = parse_claim(line).map_err(|why| (number, why))?;
        claims.push((number, claim));
        rest = after;
    }
    Ok(claims)
}

/// Makes a newly created file's directory entry durable.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing directory {}", parent.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITNESS: Mac = Mac([0xb0, 0xc4, 0x20, 0, 0, 0x0f]);
    const PRIMARY: Mac = Mac([0xb0, 0xc4, 0x20, 0, 0, 1]);
    const BACKUP: Mac = Mac([0xb0, 0xc4, 0x20, 0, 0, 2]);

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tandem-witness-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_command_line_names_state_mac_and_attachment() {
        use clap::Parser;
        let args = |mac: &str, attach: &str| {
            let line = [
                "xtask", "witness", "--state", "w.state", "--mac", mac, "--attach", attach,
            ];
            crate::Cli::try_parse_from(line).map(|cli| cli.command)
        };
        let Ok(crate::Command::Witness { state, mac, attach }) =
            args("b0:c4:20:00:00:0f", "udp:4000:4001")
        else {
            panic!("not the witness command");
        };
        assert_eq!((state, mac), (PathBuf::from("w.state"), WITNESS));
        assert_eq!(attach, parse_attach("udp:4000:4001").unwrap());
        assert!(args("b0:c4:20:00:00", "udp:4000:4001").is_err());
        assert!(args("b0:c4:20:00:00:0f", "tcp:4000:4001").is_err());
    }

    #[test]
    fn attach_accepts_ports_on_localhost_or_full_addresses() {
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(
            parse_attach("udp:4000:4001").unwrap(),
            Attach {
                bind: local(4000),
                remote: local(4001)
            }
        );
        let full = parse_attach("udp:0.0.0.0:4000:10.0.0.2:4001").unwrap();
        assert_eq!(full.bind, SocketAddr::from(([0, 0, 0, 0], 4000)));
        assert_eq!(full.remote, SocketAddr::from(([10, 0, 0, 2], 4001)));
        for bad in [
            "tcp:1:2",
            "udp:1",
            "udp:1:70000",
            "udp:x:1:y:2",
            "udp:1:2:3",
        ] {
            assert!(parse_attach(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_lines_round_trip_and_bad_ones_name_their_line() {
        let claim = Claimed {
            cluster: 0xabcd_0123,
            epoch: 7,
            side: Side::Backup,
        };
        let line = claim_line(claim);
        assert_eq!(line, "claim cluster=0xabcd0123 epoch=7 side=backup");
        assert_eq!(parse_claim(&line), Ok(claim));
        let text = format!("{line}\n{}\n", claim_line(Claimed { epoch: 8, ..claim }));
        assert_eq!(parse_state(&text).unwrap().len(), 2);
        assert_eq!(parse_state(""), Ok(vec![]));
        for (text, line, why) in [
            ("claim cluster=0x1 epoch=1 side=primary", 1, "incomplete"),
            (
                "claim cluster=0x1 epoch=1 side=primary\nclaim",
                2,
                "incomplete",
            ),
            ("\n", 1, "expected `claim"),
            (
                "claim cluster=0x1 epoch=1 side=primary\n\n",
                2,
                "expected `claim",
            ),
            ("claim cluster=0x1 epoch=1 side=left\n", 1, "side `left`"),
            (
                "claim cluster=0xzz epoch=1 side=primary\n",
                1,
                "cluster `zz`",
            ),
            ("claim cluster=1 epoch=1 side=primary\n", 1, "cluster=0x"),
            ("claim cluster=0x1 epoch=0 side=primary\n", 1, "epoch 0"),
            ("claim cluster=0x1 epoch=-1 side=primary\n", 1, "epoch `-1`"),
            (
                "claim cluster=0x1  epoch=1 side=primary\n",
                1,
                "expected `claim",
            ),
        ] {
            let (at, message) = parse_state(text).unwrap_err();
            assert_eq!(at, line, "{text:?}");
            assert!(message.contains(why), "{text:?}: {message}");
        }
    }

    #[test]
    fn a_corrupt_state_file_refuses_the_start_naming_file_and_line() {
        let dir = temp_dir("corrupt");
        let path = dir.join("state");
        fs::write(
            &path,
            "claim cluster=0x1 epoch=2 side=primary\nclaim cluster=0x1 epoch=2 side=backup\n",
        )
        .unwrap();
        let e = StateFile::open(&path).err().unwrap().to_string();
        assert!(e.contains(&format!("{}:2:", path.display())), "{e}");
        assert!(e.contains("epoch 2"), "{e}");
        fs::write(&path, "claim cluster=0x1 epoch=2 side=primary\ngarbage\n").unwrap();
        let e = StateFile::open(&path).err().unwrap().to_string();
        assert!(e.contains(&format!("{}:2:", path.display())), "{e}");
    }

    /// A board's end of the hub: the socket the witness sends to.
    struct Board {
        socket: UdpSocket,
        witness: SocketAddr,
    }

    impl Board {
        fn new() -> Board {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            // A free port for the witness (the hub finds its ports the same way).
            let witness = UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            Board { socket, witness }
        }

        fn start_witness(&self, state: &Path) -> Witness {
            Witness::start(&WitnessOptions {
                state: state.to_path_buf(),
                mac: WITNESS,
                endpoint: self.witness.port(),
                hub: self.socket.local_addr().unwrap().port(),
            })
            .unwrap()
        }

        fn send(&self, to: Mac, from: Mac, channel: Channel, payload: &[u8]) {
            let mut frame = [0u8; ether::MAX_FRAME];
            let n = ether::encode(to, from, channel, payload, &mut frame).unwrap();
            self.socket.send_to(&frame[..n], self.witness).unwrap();
        }

        /// Sends `request` and returns the reply frame's destination, source and answer.
        fn ask(&self, from: Mac, to: Mac, request: Request) -> (Mac, Mac, Answer) {
            self.send(to, from, Channel::Witness, &request.encode());
            let mut buf = [0u8; 2048];
            let n = self.socket.recv(&mut buf).expect("the witness answers");
            let frame = ether::decode(&buf[..n]).unwrap();
            assert_eq!(frame.channel, Channel::Witness);
            (frame.dst, frame.src, Answer::decode(frame.payload).unwrap())
        }
    }

    fn claim(epoch: u32, side: Side, nonce: u64) -> Request {
        Request {
            cluster: 0x5eed,
            epoch,
            ask: Ask::Claim(side),
            nonce,
        }
    }

    #[test]
    fn the_server_answers_over_udp_and_its_decisions_survive_a_restart() {
        let state = temp_dir("serve").join("state");
        let board = Board::new();
        let witness = board.start_witness(&state);

        let (dst, src, answer) = board.ask(PRIMARY, WITNESS, claim(1, Side::Primary, 11));
        assert_eq!(
            (dst, src),
            (PRIMARY, WITNESS),
            "replies to the asker from its MAC"
        );
        let seen = (answer.holder, answer.current, answer.nonce);
        assert_eq!(seen, (Some(Side::Primary), 1, 11));
        assert_eq!(
            fs::read_to_string(&state).unwrap(),
            "claim cluster=0x00005eed epoch=1 side=primary\n",
            "persisted before the answer left"
        );
        let query = Request {
            ask: Ask::Query,
            ..claim(1, Side::Primary, 12)
        };
        let (_, _, answer) = board.ask(BACKUP, Mac::BROADCAST, query);
        assert_eq!(
            answer.holder,
            Some(Side::Primary),
            "sent to everyone, answered"
        );

        // Garbage, log traffic and frames for another station get no answer and stop nothing.
        let rival = claim(1, Side::Backup, 1).encode();
        board.send(WITNESS, BACKUP, Channel::Witness, &[1, 2, 3]);
        board.send(WITNESS, BACKUP, Channel::Log, &rival);
        board.send(PRIMARY, BACKUP, Channel::Witness, &rival);
        board.send(WITNESS, Mac::BROADCAST, Channel::Witness, &rival);
        board.socket.send_to(&[0x55; 7], board.witness).unwrap();
        let mut bad_channel = [0u8; ether::MIN_FRAME];
        ether::encode(WITNESS, BACKUP, Channel::Witness, &rival, &mut bad_channel).unwrap();
        bad_channel[14] = 9;
        board.socket.send_to(&bad_channel, board.witness).unwrap();
        let (_, _, answer) = board.ask(BACKUP, WITNESS, claim(2, Side::Backup, 13));
        assert_eq!((answer.holder, answer.nonce), (Some(Side::Backup), 13));

        let log = witness.stop().unwrap();
        assert_eq!(
            log.last().unwrap(),
            "witness stopped: 3 answers, 2 decisions, 3 malformed, 3 ignored, 0 refused (full)"
        );
        let decided: Vec<_> = log.iter().filter(|l| l.contains("decided")).collect();
        assert_eq!(
            decided,
            [
                "witness: decided claim cluster=0x00005eed epoch=1 side=primary for b0:c4:20:00:00:01",
                "witness: decided claim cluster=0x00005eed epoch=2 side=backup for b0:c4:20:00:00:02",
            ]
        );
        assert!(log.iter().any(|l| {
            l.contains("b0:c4:20:00:00:02 query cluster=0x00005eed epoch=1 -> holder=primary")
        }));

        // Restarted on the same port with the same state: the first winners stand.
        let witness = board.start_witness(&state);
        let (_, _, answer) = board.ask(PRIMARY, WITNESS, claim(2, Side::Primary, 14));
        assert_eq!((answer.holder, answer.nonce), (Some(Side::Backup), 14));
        let (_, _, answer) = board.ask(BACKUP, WITNESS, claim(1, Side::Backup, 15));
        assert_eq!(
            (answer.holder, answer.current),
            (None, 2),
            "epoch 1 is stale now"
        );
        let log = witness.stop().unwrap();
        assert!(log[0].ends_with("(2 decisions)"), "{}", log[0]);
        assert!(!log.iter().any(|l| l.contains("decided")));
        assert_eq!(fs::read_to_string(&state).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_witness_with_a_corrupt_state_file_does_not_start() {
        let state = temp_dir("refuse").join("state");
        fs::write(
            &state,
            "claim cluster=0x1 epoch=1 side=primary\nclaim cluster=0x1 epoch=1",
        )
        .unwrap();
        let board = Board::new();
        let e = Witness::start(&WitnessOptions {
            state: state.clone(),
            mac: WITNESS,
            endpoint: board.witness.port(),
            hub: board.socket.local_addr().unwrap().port(),
        })
        .err()
        .unwrap();
        assert!(
            format!("{e:#}").contains(&format!(
                "{}:2: the last line is incomplete",
                state.display()
            )),
            "{e:#}"
        );
    }
}
