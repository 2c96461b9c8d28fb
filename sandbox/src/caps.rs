//! Capability numbers and Docker's default set.

/// Linux capability numbers (`linux/capability.h`).
pub mod cap {
    #![allow(missing_docs)]
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const LINUX_IMMUTABLE: u32 = 9;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_BROADCAST: u32 = 11;
    pub const NET_ADMIN: u32 = 12;
    pub const NET_RAW: u32 = 13;
    pub const IPC_LOCK: u32 = 14;
    pub const IPC_OWNER: u32 = 15;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_RAWIO: u32 = 17;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_PACCT: u32 = 20;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const SYS_NICE: u32 = 23;
    pub const SYS_RESOURCE: u32 = 24;
    pub const SYS_TIME: u32 = 25;
    pub const SYS_TTY_CONFIG: u32 = 26;
    pub const MKNOD: u32 = 27;
    pub const LEASE: u32 = 28;
    pub const AUDIT_WRITE: u32 = 29;
    pub const AUDIT_CONTROL: u32 = 30;
    pub const SETFCAP: u32 = 31;
    pub const MAC_OVERRIDE: u32 = 32;
    pub const MAC_ADMIN: u32 = 33;
    pub const SYSLOG: u32 = 34;
    pub const WAKE_ALARM: u32 = 35;
    pub const BLOCK_SUSPEND: u32 = 36;
    pub const AUDIT_READ: u32 = 37;
    pub const PERFMON: u32 = 38;
    pub const BPF: u32 = 39;
    pub const CHECKPOINT_RESTORE: u32 = 40;
}

/// The capabilities Docker (and runc's default spec) grants a container.
pub const DOCKER_DEFAULT_CAPS: &[u32] = &[
    cap::CHOWN,
    cap::DAC_OVERRIDE,
    cap::FSETID,
    cap::FOWNER,
    cap::MKNOD,
    cap::NET_RAW,
    cap::SETGID,
    cap::SETUID,
    cap::SETFCAP,
    cap::SETPCAP,
    cap::NET_BIND_SERVICE,
    cap::SYS_CHROOT,
    cap::KILL,
    cap::AUDIT_WRITE,
];

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub(crate) fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(cap::CHECKPOINT_RESTORE)
            .min(63)
    })
}
