//! What the two benchmark binaries share: command-line values, CPU pinning, fatal errors.
//!
//! Both binaries are tools run by `bench/net.py`: on bad input or an OS error they print one
//! line saying what failed and exit with status 1 (the harness shows that line in its report).
//! Nothing here is on a hot path.

use std::fmt::Display;
use std::io::{self, Write};
use std::process;
use std::str::FromStr;

/// Print `prog: msg` to stderr and exit with status 1.
pub fn die(prog: &str, msg: impl Display) -> ! {
    eprintln!("{prog}: {msg}");
    process::exit(1)
}

/// Write one line to stdout and flush it: a closed stdout is a clear error, not a panic.
pub fn print_line(prog: &str, line: impl Display) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        die(prog, format_args!("writing to stdout: {e}"))
    }
}

/// The value after `flag` on the command line, parsed, or a clear exit.
pub fn flag_value<T: FromStr>(prog: &str, flag: &str, value: Option<String>) -> T
where
    T::Err: Display,
{
    let Some(text) = value else {
        die(prog, format_args!("{flag} needs a value"))
    };
    text.parse()
        .unwrap_or_else(|e| die(prog, format_args!("bad value {text:?} for {flag}: {e}")))
}

/// A byte count with an optional binary suffix: `1024`, `64K`, `256KiB`, `2G`, `2GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let upper = text.trim().to_ascii_uppercase();
        let number = upper.trim_end_matches("IB").trim_end_matches('B');
        let (digits, shift) = match number.chars().last() {
            Some('K') => (&number[..number.len() - 1], 10),
            Some('M') => (&number[..number.len() - 1], 20),
            Some('G') => (&number[..number.len() - 1], 30),
            _ => (number, 0),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("expected a byte count like 1024, 64K or 2G, got {text:?}"))?;
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// Pin the calling thread (the whole process, for these single-threaded tools) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all-zeroes is the empty set; CPU_SET
    // writes one bit inside it (cpu < CPU_SETSIZE was checked above); sched_setaffinity only
    // reads the set, of the size we pass.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn byte_sizes_take_binary_suffixes() {
        assert_eq!("1024".parse(), Ok(ByteSize(1024)));
        assert_eq!("64K".parse(), Ok(ByteSize(65536)));
        assert_eq!("256KiB".parse(), Ok(ByteSize(256 << 10)));
        assert_eq!("2g".parse(), Ok(ByteSize(2 << 30)));
        assert!("2X".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
    }
}
