/* writer FILE BYTES [LINE]: writes BYTES bytes to stdout as LINE-byte lines
 * (default 100, newline included) in large write(2) calls, then appends
 * "<start ns> <end ns> <bytes written>\n" to FILE (CLOCK_REALTIME) and
 * sleeps until a signal ends it (so the supervisor does not restart it).
 *
 * stdout is a pipe to the supervisor: the pipe holds only 64 KiB, so the
 * writer can go no faster than the supervisor reads, and its run time
 * measures the supervisor's output throughput. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long long start = now_ns();
    if (argc < 3) return 2;
    long long total = atoll(argv[2]);
    int line = argc > 3 ? atoi(argv[3]) : 100;
    if (line < 2 || line > 4096) return 2;
    /* One chunk of whole lines, a little under 64 KiB (one pipe's worth). */
    size_t per = (65536 / (size_t)line) * (size_t)line;
    char *chunk = malloc(per);
    if (!chunk) return 1;
    for (size_t i = 0; i < per; i += (size_t)line) {
        for (int j = 0; j < line - 1; j++) chunk[i + (size_t)j] = (char)('a' + (j % 26));
        chunk[i + (size_t)line - 1] = '\n';
    }
    long long done = 0;
    while (done < total) {
        size_t want = per;
        if ((long long)want > total - done) want = (size_t)(((total - done) / line) * line);
        if (want == 0) break;
        size_t off = 0;
        while (off < want) {
            ssize_t n = write(1, chunk + off, want - off);
            if (n <= 0) return 1;
            off += (size_t)n;
        }
        done += (long long)want;
    }
    long long end = now_ns();
    char out[96];
    int n = snprintf(out, sizeof out, "%lld %lld %lld\n", start, end, done);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, out, (size_t)n) != n) return 1;
        close(fd);
    }
    for (;;) pause();
}
