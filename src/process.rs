//! The process and the kernel: protections set once at start, and file descriptors handed
//! over by a parent. The one module allowed `unsafe`; everything else reaches the kernel
//! through safe wrappers.
#![allow(unsafe_code)]

/// Marks the process not dumpable: no core file is written on a crash (a core would hold
/// passwords in flight and the cache key), other processes of the same user cannot ptrace
/// it or read its memory, and its `/proc/PID` files belong to root. Applies to everything
/// the process does after the call, so `main` calls it before reading any secret.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Takes ownership of an open file descriptor a parent process handed over (the credential
/// plugin's `--password-fd`). Refuses a descriptor that is not open.
pub(crate) fn take_fd(fd: i32) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // Validate before taking ownership: from_raw_fd on a closed descriptor would be UB-adjacent.
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open and was handed to us for this purpose; we own it from here.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The effective user id: the owner that the credential plugin's token cache must have.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Takes an exclusive advisory lock (`flock`) on `file`. With `wait` false it returns
/// `Ok(false)` instead of waiting when another process holds it. The kernel releases the
/// lock when the file is closed or its holder dies, so a crashed holder never leaves it
/// taken.
pub(crate) fn lock_exclusive(file: &std::fs::File, wait: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock only acts on the descriptor, which `file` keeps open for the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn afterwards_the_process_is_not_dumpable() {
        super::forbid_core_dumps().unwrap();
        // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 0);
    }

    #[test]
    fn a_second_open_file_cannot_take_a_held_lock_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = std::fs::File::create(&path).unwrap();
        let second = std::fs::File::open(&path).unwrap();
        assert!(super::lock_exclusive(&first, false).unwrap());
        assert!(!super::lock_exclusive(&second, false).unwrap());
        drop(first);
        assert!(super::lock_exclusive(&second, false).unwrap());
    }
}
