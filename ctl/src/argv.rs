//! Hiding a value given on the command line.
//!
//! `fluxctl secrets set NAME VALUE` (the product page's form) puts the
//! value in the process's arguments, which every local user can read in
//! `/proc/<pid>/cmdline` while fluxctl runs. As database clients do with a
//! password argument, fluxctl overwrites the argument in its own memory as
//! soon as it has parsed it, so the kernel shows `xxxx…` from then on, and
//! says so on a terminal, pointing to the forms that never expose it (the
//! hidden prompt, stdin, `--from-file`). The value still reached the
//! process's arguments for the moment before the overwrite, and the
//! shell's history: the warning is there for that.
//!
//! The overwrite goes through `/proc/self/mem` at the address the kernel
//! gives for the arguments (`/proc/self/stat`, fields 48–49), so it needs
//! no unsafe code; where that is impossible (no `/proc`, a locked-down
//! kernel) nothing is changed and the warning still applies.

use std::io::{Read, Seek, SeekFrom, Write};

/// The arguments area of this process: its start address and its bytes.
fn arguments() -> std::io::Result<(u64, Vec<u8>)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: field 3 is the first after ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or_else(|| std::io::Error::other("unexpected /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("no argument addresses in /proc/self/stat"))
    };
    let (start, end) = (field(48)?, field(49)?);
    let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
    let mut mem = std::fs::File::open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(start))?;
    mem.read_exact(&mut bytes)?;
    Ok((start, bytes))
}

/// Overwrites, in this process's arguments, the last argument equal to
/// `value` with `x`s of the same length. Returns whether it did.
pub fn hide(value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let Ok((start, bytes)) = arguments() else {
        return false;
    };
    // Arguments are NUL-terminated, one after the other.
    let mut offset = 0usize;
    let mut found = None;
    for arg in bytes.split(|b| *b == 0) {
        if arg == value.as_bytes() {
            found = Some(offset);
        }
        offset += arg.len() + 1;
    }
    let Some(at) = found else { return false };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .and_then(|mut mem| {
            mem.seek(SeekFrom::Start(start + at as u64))?;
            mem.write_all(&vec![b'x'; value.len()])
        });
    written.is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_arguments_area_is_found() {
        // The test binary's own arguments: the first is its path.
        let (_, bytes) = super::arguments().unwrap();
        let first = bytes.split(|b| *b == 0).next().unwrap();
        let exe = std::env::args().next().unwrap();
        assert_eq!(first, exe.as_bytes());
        assert!(!super::hide("no-such-argument-here"));
    }
}
