//! The load generator of the networking benchmarks: one thread, outside the loop under test.
//!
//! `loadgen echo`: a closed loop on N connections driven by one epoll (mio) instance. Each
//! connection sends a message of S bytes, waits until all S bytes have come back, then sends
//! the next one, so there is at most one request in flight per connection. After a warm-up the
//! completions in a fixed window are counted; the report gives requests/s and latency
//! percentiles (request sent to last byte echoed).
//!
//! `loadgen bulk`: one connection asks the server for B bytes (the request is the decimal count
//! and a newline; the server sends exactly B bytes, then closes) and receives them as fast as it
//! can; the report gives the throughput from the request to the last byte.
//!
//! The report is one line of JSON on stdout. Any failure (refused, reset, a server that stops
//! answering, a wrong byte count) exits with status 1 and one line on stderr saying what failed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use oxloop_loadgen::{ByteSize, die, flag_value, pin_to_cpu, print_line};

const PROG: &str = "loadgen";
const USAGE: &str = "\
usage: loadgen echo --port PORT [--host H] [--conns N] [--size BYTES] [--duration S]
                    [--warmup S] [--timeout S] [--cpu N]
       loadgen bulk --port PORT [--host H] [--bytes BYTES] [--warmup-bytes BYTES]
                    [--timeout S] [--cpu N]

echo: N connections (default 32), closed loop, messages of BYTES (default 1K), warm-up
      (default 1 s) then a measured window (default 5 s); prints requests/s and latencies.
bulk: receives BYTES (default 2G) after a warm-up transfer (default 1/16 of it); prints MiB/s.
--timeout: give up when no progress for S seconds (default 10). --cpu: pin to that CPU.
BYTES takes K, M, G suffixes (binary).";

/// Read buffer size: larger than any message, so one read can take a whole 64 KiB echo.
const READ_BUF: usize = 256 * 1024;

struct Options {
    mode: String,
    host: String,
    port: u16,
    conns: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    bytes: u64,
    warmup_bytes: Option<u64>,
    timeout: f64,
    cpu: Option<usize>,
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some(m @ ("echo" | "bulk")) => m.to_owned(),
        Some("-h" | "--help") => {
            print_line(PROG, USAGE);
            std::process::exit(0)
        }
        _ => die(PROG, format_args!("expected a mode, echo or bulk\n{USAGE}")),
    };
    let mut o = Options {
        mode,
        host: "127.0.0.1".to_owned(),
        port: 0,
        conns: 32,
        size: 1024,
        duration: 5.0,
        warmup: 1.0,
        bytes: 2 << 30,
        warmup_bytes: None,
        timeout: 10.0,
        cpu: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next();
        match flag.as_str() {
            "--host" => o.host = flag_value(PROG, &flag, value),
            "--port" => o.port = flag_value(PROG, &flag, value),
            "--conns" => o.conns = flag_value(PROG, &flag, value),
            "--size" => o.size = flag_value::<ByteSize>(PROG, &flag, value).0 as usize,
            "--duration" => o.duration = flag_value(PROG, &flag, value),
            "--warmup" => o.warmup = flag_value(PROG, &flag, value),
            "--bytes" => o.bytes = flag_value::<ByteSize>(PROG, &flag, value).0,
            "--warmup-bytes" => o.warmup_bytes = Some(flag_value::<ByteSize>(PROG, &flag, value).0),
            "--timeout" => o.timeout = flag_value(PROG, &flag, value),
            "--cpu" => o.cpu = Some(flag_value(PROG, &flag, value)),
            _ => die(PROG, format_args!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    if o.port == 0 {
        die(PROG, "--port is required");
    }
    if o.conns == 0 || o.size == 0 || o.bytes == 0 {
        die(PROG, "--conns, --size and --bytes must be positive");
    }
    if !(o.duration > 0.0 && o.warmup >= 0.0 && o.timeout > 0.0) {
        die(
            PROG,
            "--duration and --timeout must be positive, --warmup not negative",
        );
    }
    o
}

fn main() {
    let o = parse_options();
    if let Some(cpu) = o.cpu {
        pin_to_cpu(cpu).unwrap_or_else(|e| die(PROG, format_args!("pinning to CPU {cpu}: {e}")));
    }
    let addr = resolve(&o.host, o.port).unwrap_or_else(|e| die(PROG, e));
    let report = match o.mode.as_str() {
        "echo" => run_echo(&o, addr),
        _ => run_bulk(&o, addr),
    };
    match report {
        Ok(json) => print_line(PROG, json),
        Err(e) => die(PROG, e),
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to no address"))
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------------------------
// echo
// ---------------------------------------------------------------------------------------------

/// One connection of the closed loop: the request in flight and how far it has got.
struct Conn {
    stream: TcpStream,
    sent: usize,
    received: usize,
    started: Instant,
}

/// Counts completions inside the measured window and keeps their latencies.
struct Recorder {
    window_start: Instant,
    window_end: Instant,
    latencies_ns: Vec<u64>,
    last_completion: Instant,
}

impl Recorder {
    fn record(&mut self, started: Instant, now: Instant) {
        self.last_completion = now;
        if now >= self.window_start && now < self.window_end {
            self.latencies_ns.push((now - started).as_nanos() as u64);
        }
    }
}

/// Where a connection's reading stopped.
enum Received {
    /// The whole echo of the request in flight is in.
    Complete,
    /// The receive queue is empty: more data will raise a new edge.
    Drained,
}

impl Conn {
    /// Move this connection's requests along; called on each of its events and once at start.
    ///
    /// mio is edge-triggered: after an event the socket must be read until the receive queue
    /// is empty, or new data raises no new event. Reading stops at `WouldBlock`, at a short
    /// read (the queue was emptied, as libuv also assumes), or when the echo is complete: the
    /// server echoes only what was sent, so the queue is then empty too, and the next request
    /// is sent without a read that could only fail. Sending stops at `WouldBlock` (a writable
    /// event follows), and reading goes on meanwhile, so a large message cannot deadlock with
    /// both sides' socket buffers full.
    fn pump(&mut self, payload: &[u8], buf: &mut [u8], rec: &mut Recorder) -> io::Result<()> {
        let mut may_read = true;
        loop {
            self.send(payload)?;
            if !may_read {
                return Ok(());
            }
            match self.receive(payload.len(), buf)? {
                Received::Drained => return Ok(()),
                Received::Complete => {
                    let now = Instant::now();
                    rec.record(self.started, now);
                    self.sent = 0;
                    self.received = 0;
                    self.started = now;
                    may_read = false;
                }
            }
        }
    }

    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        while self.sent < payload.len() {
            match self.stream.write(&payload[self.sent..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn receive(&mut self, size: usize, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Received::Drained),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.received += n;
            if self.received > self.sent {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "the server sent {} bytes back for {} sent",
                        self.received, self.sent
                    ),
                ));
            }
            if self.received == size {
                return Ok(Received::Complete);
            }
            if n < buf.len() {
                return Ok(Received::Drained);
            }
        }
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = StdTcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

fn run_echo(o: &Options, addr: SocketAddr) -> Result<String, String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
    let mut streams = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let mut stream = connect(addr).map_err(|e| format!("connection {i} to {addr}: {e}"))?;
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("registering connection {i}: {e}"))?;
        streams.push(stream);
    }

    let payload = vec![b'x'; o.size];
    let mut buf = vec![0u8; READ_BUF];
    let start = Instant::now();
    let window_start = start + seconds(o.warmup);
    let window_end = window_start + seconds(o.duration);
    let stall = seconds(o.timeout);
    let mut rec = Recorder {
        window_start,
        window_end,
        // Room for 500k requests/s (twice the ceiling server's best here) without
        // reallocating inside the window.
        latencies_ns: Vec::with_capacity((o.duration * 500_000.0) as usize),
        last_completion: start,
    };
    let mut conns: Vec<Conn> = streams
        .into_iter()
        .map(|stream| Conn {
            stream,
            sent: 0,
            received: 0,
            started: start,
        })
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.pump(&payload, &mut buf, &mut rec)
            .map_err(|e| format!("connection {i}: {e}"))?;
    }

    let mut events = Events::with_capacity(o.conns.max(64));
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        if now - rec.last_completion > stall {
            return Err(format!(
                "no echo completed for {:.1} s (is the server still running?)",
                o.timeout
            ));
        }
        let wait = (window_end - now).min(stall);
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in events.iter() {
            let i = event.token().0;
            conns[i]
                .pump(&payload, &mut buf, &mut rec)
                .map_err(|e| format!("connection {i}: {e}"))?;
        }
    }

    let mut lat = rec.latencies_ns;
    if lat.is_empty() {
        return Err("no request completed inside the measured window".to_owned());
    }
    lat.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    let pct = |p: f64| {
        let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        us(lat[rank - 1])
    };
    let mean = lat.iter().map(|&ns| ns as f64).sum::<f64>() / lat.len() as f64 / 1000.0;
    Ok(format!(
        concat!(
            r#"{{"mode":"echo","addr":"{}","conns":{},"size":{},"warmup_s":{},"duration_s":{},"#,
            r#""requests":{},"rps":{:.1},"latency_us":{{"mean":{:.1},"p50":{:.1},"p90":{:.1},"#,
            r#""p99":{:.1},"p999":{:.1},"max":{:.1}}}}}"#
        ),
        addr,
        o.conns,
        o.size,
        o.warmup,
        o.duration,
        lat.len(),
        lat.len() as f64 / o.duration,
        mean,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        us(lat[lat.len() - 1]),
    ))
}

// ---------------------------------------------------------------------------------------------
// bulk
// ---------------------------------------------------------------------------------------------

/// Ask the server for `total` bytes on a new connection, receive them all, return the seconds
/// from sending the request to the last byte.
fn transfer(addr: SocketAddr, total: u64, timeout: Duration, buf: &mut [u8]) -> io::Result<f64> {
    let mut stream = StdTcpStream::connect(addr)?;
    // A blocking read with a timeout: one connection needs no poller, and a stalled server
    // ends the run with an error instead of hanging it.
    stream.set_read_timeout(Some(timeout))?;
    let t0 = Instant::now();
    stream.write_all(format!("{total}\n").as_bytes())?;
    let mut got: u64 = 0;
    while got < total {
        match stream.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("the server closed the connection after {got} of {total} bytes"),
                ));
            }
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no data for {timeout:?} after {got} of {total} bytes"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // The server must now close: anything more is a wrong count.
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(elapsed),
            Ok(n) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("the server sent {n} bytes more than the {total} asked for"),
                ));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn run_bulk(o: &Options, addr: SocketAddr) -> Result<String, String> {
    let timeout = seconds(o.timeout);
    let mut buf = vec![0u8; READ_BUF];
    let warmup = o.warmup_bytes.unwrap_or(o.bytes / 16);
    if warmup > 0 {
        transfer(addr, warmup, timeout, &mut buf)
            .map_err(|e| format!("warm-up transfer from {addr}: {e}"))?;
    }
    let secs = transfer(addr, o.bytes, timeout, &mut buf)
        .map_err(|e| format!("transfer from {addr}: {e}"))?;
    let mib_per_s = o.bytes as f64 / (1u64 << 20) as f64 / secs;
    Ok(format!(
        r#"{{"mode":"bulk","addr":"{addr}","bytes":{},"warmup_bytes":{warmup},"seconds":{secs:.4},"mib_per_s":{mib_per_s:.1}}}"#,
        o.bytes
    ))
}
