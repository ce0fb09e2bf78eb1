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
pub fn take_fd(fd: i32) -> std::io::Result<std::fs::File> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn afterwards_the_process_is_not_dumpable() {
        super::forbid_core_dumps().unwrap();
        // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 0);
    }
}
