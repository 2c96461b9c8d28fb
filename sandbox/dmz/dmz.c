/*
 * distill's exec shim: the program a container process executes last before its own.
 *
 * Why it exists (CVE-2019-5736): a process the runtime starts in a container is a copy of the
 * runtime until it executes the container's program, so /proc/self/exe names the runtime's
 * binary. A container program that is a script starting with `#!/proc/self/exe` makes the
 * kernel execute that binary inside the container, where the container can open it through
 * /proc/<pid>/exe and write it once it exits. Executing this shim first, from a sealed memfd
 * (no write can ever succeed on it), means that what /proc/self/exe names at the container's
 * exec is this shim, never a host file.
 *
 * Protocol (built by sandbox/src/dmz.rs): argv = REPORT_FD NCAND CAND... ARGV..., envp as the
 * program gets it. The shim empties its inheritable and ambient capability sets (a non-root
 * caller carries its capabilities across the shim's exec as ambient ones, see
 * child.rs `carry_caps_across_shim`; the program must start with neither, CVE-2022-24769),
 * marks REPORT_FD close-on-exec, tries each candidate path in turn
 * with ARGV as the program's argv (the sandbox's PATH search), and on failure writes the same
 * 16-byte exec report the sandbox child writes (step, desc, stage, errno; native endian) and
 * exits 127. Invoked any other way (e.g. as a script's interpreter) it exits 127 at once.
 *
 * Freestanding (no libc): a few hundred bytes, cheap to copy and to execute.
 */

#define STEP_EXEC 3

#define SYS_write 1
#define SYS_capget 125
#define SYS_capset 126
#define SYS_prctl 157
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#define CAP_VERSION_3 0x20080522
#define SYS_fcntl 72
#define SYS_execve 59
#define SYS_exit_group 231
#define F_SETFD 2
#define FD_CLOEXEC 1
#define ENOENT 2
#define EACCES 13
#define ENOTDIR 20
#define ENOEXEC 8
#define ELOOP 40
#define ENAMETOOLONG 36

static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}

static long sys5(long n, long a, long b, long c, long d, long e) {
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return r;
}

static void die(void) {
    for (;;)
        sys3(SYS_exit_group, 127, 0, 0);
}

/* A non-negative decimal number, or -1. */
static long number(const char *s) {
    long n = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > 100000)
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n;
}

__attribute__((used)) void dmz_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 3)
        die();
    long fd = number(argv[0]);
    long ncand = number(argv[1]);
    if (fd < 0 || ncand < 1 || ncand > argc - 3)
        die();
    char **cand = argv + 2;
    char **prog_argv = cand + ncand;
    int err = ENOENT, eacces = 0;
    struct {
        unsigned version;
        int pid;
    } hdr = {CAP_VERSION_3, 0};
    struct {
        unsigned effective, permitted, inheritable;
    } caps[2];
    long r = sys3(SYS_capget, (long)&hdr, (long)caps, 0);
    if (r == 0 && (caps[0].inheritable | caps[1].inheritable)) {
        caps[0].inheritable = caps[1].inheritable = 0;
        r = sys3(SYS_capset, (long)&hdr, (long)caps, 0);
    }
    if (r == 0)
        r = sys5(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (r < 0) {
        /* Never run the program with capabilities it must not have. */
        err = (int)-r;
        goto report;
    }
    if (sys3(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC) < 0)
        die();
    for (long i = 0; i < ncand; i++) {
        err = (int)-sys3(SYS_execve, (long)cand[i], (long)prog_argv, (long)envp);
        if (err == EACCES)
            eacces = 1;
        else if (err != ENOENT && err != ENOTDIR && err != ELOOP && err != ENAMETOOLONG)
            break;
    }
    if (eacces && err != ENOEXEC && (err == ENOENT || err == ENOTDIR))
        err = EACCES;
report:;
    int report[4] = {STEP_EXEC, 0, 0, err};
    sys3(SYS_write, fd, (long)report, sizeof report);
    die();
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call dmz_main\n"
        "  hlt\n");
