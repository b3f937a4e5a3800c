//! The ceiling row of the networking benchmarks: a plain single-threaded epoll (mio) server.
//!
//! No event loop, no Python: what one core can do with the same syscalls, so a loop's number
//! can be read against it. Echo mode (the default) writes back every byte it reads, from the
//! read buffer itself (a partial write keeps the rest and stops reading that connection until
//! it is flushed). Bulk mode (`--bulk`) speaks loadgen's bulk protocol: it reads the decimal byte
//! count and a newline, sends that many bytes in 256 KiB writes, then closes.
//!
//! On start it prints `listening PORT` on stdout (with `--port 0` the OS picks the port).
//! A connection that fails is closed; the server keeps serving the others.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use oxloop_loadgen::{die, flag_value, pin_to_cpu, print_line};

const PROG: &str = "echo-ceiling";
const USAGE: &str = "usage: echo-ceiling [--host H] [--port PORT] [--bulk] [--cpu N]";
const LISTENER: Token = Token(usize::MAX);
const READ_BUF: usize = 256 * 1024;
/// Bulk writes are this size, as the Python bulk server's chunks.
const BULK_CHUNK: usize = 256 * 1024;
/// The longest bulk request line accepted ("2147483648\n" is 11 bytes).
const MAX_REQUEST_LINE: usize = 32;

enum State {
    /// Echo bytes `pending[flushed..]` are still to be written back.
    Echo { pending: Vec<u8>, flushed: usize },
    /// Bulk: reading the request line.
    BulkRequest { line: Vec<u8> },
    /// Bulk: `left` bytes still to send.
    BulkSend { left: u64 },
}

struct Conn {
    stream: TcpStream,
    state: State,
}

/// What to do with a connection after serving its events.
enum Next {
    Keep,
    Close,
}

fn main() {
    let mut host = "127.0.0.1".to_owned();
    let mut port: u16 = 0;
    let mut bulk = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--host" => host = flag_value(PROG, &flag, args.next()),
            "--port" => port = flag_value(PROG, &flag, args.next()),
            "--bulk" => bulk = true,
            "--cpu" => {
                let cpu: usize = flag_value(PROG, &flag, args.next());
                pin_to_cpu(cpu)
                    .unwrap_or_else(|e| die(PROG, format_args!("pinning to CPU {cpu}: {e}")));
            }
            "-h" | "--help" => {
                print_line(PROG, USAGE);
                return;
            }
            _ => die(PROG, format_args!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .unwrap_or_else(|e| die(PROG, format_args!("bad address {host}:{port}: {e}")));
    if let Err(e) = serve(addr, bulk) {
        die(PROG, e);
    }
}

fn serve(addr: SocketAddr, bulk: bool) -> Result<(), String> {
    let mut listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let mut poll = Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| format!("registering the listener: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("getsockname: {e}"))?
        .port();
    // The harness waits for this line: it means connections are accepted from now on.
    print_line(PROG, format_args!("listening {port}"));

    // Connections by token; freed slots are reused so tokens stay small.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let chunk = vec![b'x'; BULK_CHUNK];
    let mut events = Events::with_capacity(1024);
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, &mut free, bulk);
                continue;
            }
            let i = event.token().0;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue; // closed earlier in this batch of events
            };
            let next = conn.serve(&mut buf, &chunk).unwrap_or_else(|e| {
                if !matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
                ) {
                    eprintln!("{PROG}: connection {i}: {e}");
                }
                Next::Close
            });
            if let Next::Close = next {
                // Dropping the stream closes its fd, which also takes it out of epoll.
                conns[i] = None;
                free.push(i);
            }
        }
    }
}

/// Accept every pending connection (the listener is edge-triggered too).
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    bulk: bool,
) {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: say so and keep serving the open connections.
                eprintln!("{PROG}: accept: {e}");
                return;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("{PROG}: TCP_NODELAY: {e}");
            continue;
        }
        let i = free.pop().unwrap_or(conns.len());
        if let Err(e) = poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            eprintln!("{PROG}: registering a connection: {e}");
            free.push(i);
            continue;
        }
        let state = if bulk {
            State::BulkRequest { line: Vec::new() }
        } else {
            State::Echo {
                pending: Vec::new(),
                flushed: 0,
            }
        };
        let conn = Some(Conn { stream, state });
        if i == conns.len() {
            conns.push(conn);
        } else {
            conns[i] = conn;
        }
    }
}

impl Conn {
    /// Serve until the socket would block (edge-triggered: every event must be drained).
    ///
    /// A short read counts as drained: the receive queue held less than the buffer, so it is
    /// empty now, and data arriving later raises a new edge (libuv makes the same assumption).
    /// This saves the read that could only fail with `WouldBlock` after every message.
    fn serve(&mut self, buf: &mut [u8], chunk: &[u8]) -> io::Result<Next> {
        loop {
            match &mut self.state {
                State::Echo { pending, flushed } => {
                    while *flushed < pending.len() {
                        match self.stream.write(&pending[*flushed..]) {
                            Ok(n) => *flushed += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Next::Keep),
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    pending.clear();
                    *flushed = 0;
                    let n = match self.stream.read(buf) {
                        Ok(0) => return Ok(Next::Close),
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Next::Keep),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    // Write straight from the read buffer; keep only what the kernel refuses.
                    let mut done = 0;
                    while done < n {
                        match self.stream.write(&buf[done..n]) {
                            Ok(k) => done += k,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                pending.extend_from_slice(&buf[done..n]);
                                break;
                            }
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if pending.is_empty() && n < buf.len() {
                        return Ok(Next::Keep); // a short read emptied the queue (see above)
                    }
                }
                State::BulkRequest { line } => {
                    let n = match self.stream.read(buf) {
                        Ok(0) => return Ok(Next::Close),
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Next::Keep),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    line.extend_from_slice(&buf[..n]);
                    if let Some(end) = line.iter().position(|&b| b == b'\n') {
                        let left = std::str::from_utf8(&line[..end])
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                            .ok_or_else(|| bad_request("expected a byte count and a newline"))?;
                        self.state = State::BulkSend { left };
                    } else if line.len() > MAX_REQUEST_LINE {
                        return Err(bad_request("request line too long"));
                    } else if n < buf.len() {
                        return Ok(Next::Keep);
                    }
                }
                State::BulkSend { left } => {
                    while *left > 0 {
                        let n = (*left).min(chunk.len() as u64) as usize;
                        match self.stream.write(&chunk[..n]) {
                            Ok(k) => *left -= k as u64,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Next::Keep),
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    // All sent: closing now sends the FIN after the queued data.
                    return Ok(Next::Close);
                }
            }
        }
    }
}

fn bad_request(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("bad bulk request: {what}"))
}
