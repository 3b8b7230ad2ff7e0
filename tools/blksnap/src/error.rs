// SPDX-License-Identifier: GPL-2.0
//! Errors that say what failed, on which device, and why: "snapshot_take:
//! /dev/blksnap-control: snapshot 0f...: No such process (ESRCH)".

use nix::errno::Errno;
use std::fmt;

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The kernel (or a system call) answered with this errno.
    Os(Errno),
    /// The input was refused before reaching the kernel.
    Invalid(String),
}

/// A failed command: its name, the device or file it was for, the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub command: String,
    pub object: String,
    pub cause: Cause,
    /// What the errno most likely means for this command, if it is obscure.
    pub hint: Option<&'static str>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn os(command: &str, object: impl fmt::Display, errno: Errno) -> Self {
        Error {
            command: command.into(),
            object: object.to_string(),
            cause: Cause::Os(errno),
            hint: None,
        }
    }

    pub fn invalid(command: &str, object: impl fmt::Display, why: impl Into<String>) -> Self {
        Error {
            command: command.into(),
            object: object.to_string(),
            cause: Cause::Invalid(why.into()),
            hint: None,
        }
    }

    /// From an I/O error of the standard library, keeping its errno.
    pub fn io(command: &str, object: impl fmt::Display, err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(n) => Error::os(command, object, Errno::from_raw(n)),
            None => Error::invalid(command, object, err.to_string()),
        }
    }

    pub fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The errno, if the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self.cause {
            Cause::Os(e) => Some(e),
            Cause::Invalid(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.command, self.object)?;
        match &self.cause {
            // Debug of an Errno is its symbolic name.
            Cause::Os(e) => write!(f, "{} ({:?})", crate::sys::strerror(*e), e),
            Cause::Invalid(why) => f.write_str(why),
        }?;
        match self.hint {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_command_device_and_errno_in_words() {
        let e = Error::os("snapshot_take", "/dev/vdb", Errno::EBUSY);
        assert_eq!(
            e.to_string(),
            "snapshot_take: /dev/vdb: Device or resource busy (EBUSY)"
        );
    }

    #[test]
    fn words_errno_as_the_c_library_does() {
        let e = Error::os("markdirtyblock", "/tmp/f", Errno::EOPNOTSUPP);
        assert_eq!(
            e.to_string(),
            "markdirtyblock: /tmp/f: Operation not supported (EOPNOTSUPP)"
        );
    }

    #[test]
    fn appends_a_hint() {
        let e = Error::os("cbtinfo", "/dev/vdb", Errno::ENOENT).with_hint("is it attached?");
        assert_eq!(
            e.to_string(),
            "cbtinfo: /dev/vdb: No such file or directory (ENOENT); is it attached?"
        );
    }

    #[test]
    fn keeps_the_errno_of_an_io_error() {
        let io = std::io::Error::from_raw_os_error(libc_enoent());
        let e = Error::io("attach", "/dev/nope", &io);
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        assert!(e
            .to_string()
            .ends_with("No such file or directory (ENOENT)"));
    }

    fn libc_enoent() -> i32 {
        Errno::ENOENT as i32
    }
}
