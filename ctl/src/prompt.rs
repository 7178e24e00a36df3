//! Reading a value at the terminal without echoing it.
//!
//! Echo is turned off on `/dev/tty` *before* the prompt is written, so no
//! keystroke typed after the prompt appears can ever be echoed, and it is
//! restored when the read ends (a guard restores it on every path). The
//! typed line is kept in a zeroizing buffer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use zeroize::Zeroizing;

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

/// Restores the terminal's settings when dropped.
struct Restore<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty, SetArg::TCSANOW, &self.saved);
    }
}

/// Writes `prompt` to the terminal and reads one line with echo off; the
/// line ending is not part of the value.
pub fn hidden(prompt: &str) -> io::Result<Zeroizing<String>> {
    let tty = File::options().read(true).write(true).open("/dev/tty")?;
    let saved = termios::tcgetattr(&tty).map_err(io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(&tty, SetArg::TCSANOW, &quiet).map_err(io::Error::from)?;
    let _restore = Restore { tty: &tty, saved };
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    let mut line = Zeroizing::new(String::new());
    BufReader::new(&tty).read_line(&mut line)?;
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    Ok(line)
}
