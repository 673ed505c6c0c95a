//! A client for QEMU's qtest protocol (`-accel qtest -qtest stdio`): port I/O
//! and guest-memory access on a machine whose CPUs never run.
//!
//! The protocol is line based: one command per line on QEMU's stdin, one
//! `OK [value]` / `FAIL …` / `ERR …` line back on its stdout; `IRQ …` lines
//! are asynchronous notices and skipped. Every answer is awaited with a
//! deadline, every line is bounded in length, and the child is killed when
//! the session is dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::QemuError;

/// Longest answer line accepted (a 4 KiB `read` is ~8 KiB of hex).
const MAX_LINE: usize = 64 * 1024;
/// Largest guest-memory access per `read`/`write` command, in bytes.
pub const MAX_ACCESS: usize = 4096;
/// How many `IRQ` notices may precede one answer.
const MAX_NOTICES: usize = 1024;

/// What a device model needs from the machine: port writes and guest-physical
/// memory. Implemented by [`Qtest`]; tests implement it with a fake.
pub trait GuestIo {
    /// `outl PORT VALUE`: a 32-bit port write (value in CPU byte order).
    fn outl(&mut self, port: u16, value: u32) -> Result<(), QemuError>;
    /// `inl PORT`: a 32-bit port read.
    fn inl(&mut self, port: u16) -> Result<u32, QemuError>;
    /// Writes `data` (at most [`MAX_ACCESS`] bytes) at guest-physical `addr`.
    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), QemuError>;
    /// Reads `len` (at most [`MAX_ACCESS`]) bytes at guest-physical `addr`.
    fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, QemuError>;
}

/// A running QEMU under `-accel qtest`, driven over its stdin/stdout.
pub struct Qtest {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    timeout: Duration,
}

impl Qtest {
    /// Starts `qemu args… -qtest stdio -qtest-log /dev/null` (the log would
    /// otherwise go to stderr and block QEMU once nobody reads it). `args`
    /// must select `-accel qtest`. Each answer must come within `timeout`.
    pub fn spawn(qemu: &Path, args: &[String], timeout: Duration) -> Result<Qtest, QemuError> {
        let mut child = Command::new(qemu)
            .args(args)
            .args(["-qtest", "stdio", "-qtest-log", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| QemuError::Spawn {
                qemu: qemu.to_path_buf(),
                source,
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(QemuError::Protocol("QEMU's pipes were not set up".into()));
        };
        // Drain stderr so QEMU never blocks on it; keep its tail for errors.
        let (etx, erx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tail = String::new();
            for line in BufReader::new(stderr).lines().take(10_000) {
                let Ok(line) = line else { break };
                tail.push_str(&line);
                tail.push('\n');
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            let _ = etx.send(tail);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                let r = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line);
                let msg = match r {
                    Ok(0) => break,
                    Ok(_) if line.len() > MAX_LINE => Err(std::io::Error::other(format!(
                        "qtest answer longer than {MAX_LINE} bytes"
                    ))),
                    Ok(_) => String::from_utf8(line)
                        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                        .map_err(|_| std::io::Error::other("qtest answer is not UTF-8")),
                    Err(e) => Err(e),
                };
                let stop = msg.is_err();
                if tx.send(msg).is_err() || stop {
                    break;
                }
            }
        });
        let mut q = Qtest {
            child,
            stdin,
            lines: rx,
            timeout,
        };
        // The first exchange proves QEMU started; if it did not, say why.
        if let Err(e) = q.command("endianness") {
            let _ = q.child.kill();
            let _ = q.child.wait();
            let stderr = erx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
            return Err(QemuError::Start {
                qemu: qemu.to_path_buf(),
                stderr: stderr.trim().to_string(),
                cause: e.to_string(),
            });
        }
        Ok(q)
    }

    /// Sends one command and returns the text after `OK` (may be empty).
    pub fn command(&mut self, cmd: &str) -> Result<String, QemuError> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| QemuError::Protocol(format!("writing {cmd:?}: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        for _ in 0..MAX_NOTICES {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => return Err(QemuError::Protocol(format!("{cmd:?}: {e}"))),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(QemuError::Timeout {
                        command: cmd.to_string(),
                        after: self.timeout,
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(QemuError::Protocol(format!(
                        "{cmd:?}: QEMU closed its output (exited?)"
                    )))
                }
            };
            if line.starts_with("IRQ") {
                continue;
            }
            return match line.strip_prefix("OK") {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                    Ok(rest.trim().to_string())
                }
                _ => Err(QemuError::Protocol(format!("{cmd:?} answered {line:?}"))),
            };
        }
        Err(QemuError::Protocol(format!(
            "{cmd:?}: more than {MAX_NOTICES} IRQ notices"
        )))
    }

    /// Ends QEMU (`quit` is not a qtest command: the child is killed).
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses a qtest `0x…` value.
fn parse_value(cmd: &str, text: &str) -> Result<u64, QemuError> {
    text.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| QemuError::Protocol(format!("{cmd:?}: expected 0x…, got {text:?}")))
}

impl GuestIo for Qtest {
    fn outl(&mut self, port: u16, value: u32) -> Result<(), QemuError> {
        self.command(&format!("outl {port:#x} {value:#x}"))
            .map(drop)
    }

    fn inl(&mut self, port: u16) -> Result<u32, QemuError> {
        let cmd = format!("inl {port:#x}");
        let v = parse_value(&cmd, &self.command(&cmd)?)?;
        u32::try_from(v)
            .map_err(|_| QemuError::Protocol(format!("{cmd:?}: {v:#x} exceeds 32 bits")))
    }

    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), QemuError> {
        if data.is_empty() || data.len() > MAX_ACCESS {
            return Err(QemuError::Protocol(format!(
                "write of {} bytes (1..={MAX_ACCESS})",
                data.len()
            )));
        }
        self.command(&format!(
            "write {addr:#x} {} 0x{}",
            data.len(),
            hex::encode(data)
        ))
        .map(drop)
    }

    fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, QemuError> {
        if len == 0 || len > MAX_ACCESS {
            return Err(QemuError::Protocol(format!(
                "read of {len} bytes (1..={MAX_ACCESS})"
            )));
        }
        let cmd = format!("read {addr:#x} {len}");
        let text = self.command(&cmd)?;
        let bytes = text
            .strip_prefix("0x")
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| QemuError::Protocol(format!("{cmd:?}: answer is not 0x + hex")))?;
        if bytes.len() != len {
            return Err(QemuError::Protocol(format!(
                "{cmd:?}: {} bytes back",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_value("x", "0x1f").unwrap(), 0x1f);
        assert!(parse_value("x", "1f").is_err());
        assert!(parse_value("x", "0xzz").is_err());
    }
}
