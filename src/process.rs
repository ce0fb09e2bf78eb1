//! Process-wide protections set once at start. The only module that needs `unsafe` for it:
//! everything else reaches the kernel through safe wrappers.

/// Marks the process not dumpable: no core file is written on a crash (a core would hold
/// passwords in flight and the cache key), other processes of the same user cannot ptrace
/// it or read its memory, and its `/proc/PID` files belong to root. Applies to everything
/// the process does after the call, so `main` calls it before reading any secret.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn afterwards_the_process_is_not_dumpable() {
        super::forbid_core_dumps().unwrap();
        // SAFETY: PR_GET_DUMPABLE takes no argument and returns the flag.
        #[allow(unsafe_code)]
        let flag = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 0);
    }
}
