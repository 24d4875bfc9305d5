/* fuzz_common.h: what both fuzz targets share. The library reads .npy files by path, so each
 * input is written to a file in a private temporary directory (on /dev/shm when there is one:
 * no disk traffic per input) or streamed through a named FIFO, the non-seekable path whose sizes
 * are only known by reading. FUZZ_ASSERT prints what went wrong and aborts, which libFuzzer
 * reports as a crash and the replay driver (replay_main.c) as a failed test.
 *
 * Header-only and static: each fuzz target is one translation unit plus this file. */
#ifndef APL_FUZZ_COMMON_H
#define APL_FUZZ_COMMON_H

#define _POSIX_C_SOURCE 200809L

#include "aploss/harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond, ...)                                                                   \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: FUZZ_ASSERT(%s) failed: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

#define FUZZ_PATH 4096
static char fuzz_dir[FUZZ_PATH];

/* Empties and removes dir (flat: the targets make no subdirectories). */
static void fuzz_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[FUZZ_PATH + 256];
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static void fuzz_cleanup(void)
{
    fuzz_remove_dir(fuzz_dir);
}

/* A process that crashed (an abort is how a finding ends) cannot clean up after itself: its
 * directory, apl_fuzz.<pid>, goes the next time a fuzz target starts, once that pid is gone. */
static void fuzz_remove_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    char p[FUZZ_PATH + 256];
    while ((e = readdir(d)) != NULL) {
        char *end;
        if (strncmp(e->d_name, "apl_fuzz.", 9) != 0)
            continue;
        long pid = strtol(e->d_name + 9, &end, 10);
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", base, e->d_name);
        if (*end == '\0' && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH &&
            lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && sb.st_uid == getuid())
            fuzz_remove_dir(p);
    }
    closedir(d);
}

/* The process's own directory, <base>/apl_fuzz.<pid>: base is $APL_FUZZ_TMP, else /dev/shm,
 * else $TMPDIR or /tmp. Removed at exit. */
static const char *fuzz_tmpdir(void)
{
    if (fuzz_dir[0])
        return fuzz_dir;
    const char *bases[] = {getenv("APL_FUZZ_TMP"), "/dev/shm", getenv("TMPDIR"), "/tmp"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        if (!bases[i] || access(bases[i], W_OK | X_OK) != 0)
            continue;
        fuzz_remove_stale(bases[i]);
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/apl_fuzz.%ld", bases[i], (long)getpid());
        struct stat sb;
        if (mkdir(fuzz_dir, 0700) == 0 ||
            (errno == EEXIST && lstat(fuzz_dir, &sb) == 0 && S_ISDIR(sb.st_mode) &&
             sb.st_uid == getuid())) {
            atexit(fuzz_cleanup);
            /* The FIFO writer may write after the reader has gone: EPIPE, not death. */
            signal(SIGPIPE, SIG_IGN);
            return fuzz_dir;
        }
    }
    fuzz_dir[0] = '\0';
    fprintf(stderr, "fuzz: cannot create a temporary directory\n");
    abort();
}

/* path = <dir>/<name>, in a static buffer per name slot (slot < 4). */
static inline const char *fuzz_path(int slot, const char *name)
{
    static char paths[4][FUZZ_PATH + 64];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_tmpdir(), name);
    return paths[slot];
}

static inline const char *fuzz_write_file(int slot, const char *name, const uint8_t *data, size_t size)
{
    const char *p = fuzz_path(slot, name);
    FILE *f = fopen(p, "wb");
    FUZZ_ASSERT(f != NULL, "cannot create %s: %s", p, strerror(errno));
    FUZZ_ASSERT(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write %s", p);
    return p;
}

/* ---- streaming through a FIFO ---- */

typedef struct {
    const char *path;
    const uint8_t *data;
    size_t size;
    atomic_int done; /* set by the reading side once the reader has returned */
} fifo_job;

/* Opens the FIFO for writing once the reader has opened it (a non-blocking open fails with
 * ENXIO until then), writes everything it can and closes: the reader then sees end of file.
 * Gives up if the reader returned without opening it. */
static void *fifo_writer(void *arg)
{
    fifo_job *job = arg;
    int fd = -1;
    while (fd < 0 && !atomic_load(&job->done)) {
        fd = open(job->path, O_WRONLY | O_NONBLOCK);
        if (fd < 0) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    if (fd < 0)
        return NULL;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    for (size_t off = 0; off < job->size;) {
        ssize_t w = write(fd, job->data + off, job->size - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) /* EPIPE: the reader stopped early, as it may */
            break;
        off += (size_t)w;
    }
    close(fd);
    return NULL;
}

/* Calls read(path, ctx) while another thread streams data through the FIFO at path. */
static inline apl_status fuzz_via_fifo(const uint8_t *data, size_t size,
                                apl_status (*read)(const char *path, void *ctx), void *ctx)
{
    const char *p = fuzz_path(3, "stream.fifo");
    struct stat sb;
    if (stat(p, &sb) != 0)
        FUZZ_ASSERT(mkfifo(p, 0600) == 0, "mkfifo %s: %s", p, strerror(errno));
    fifo_job job = {p, data, size, 0};
    pthread_t th;
    FUZZ_ASSERT(pthread_create(&th, NULL, fifo_writer, &job) == 0, "pthread_create failed");
    apl_status st = read(p, ctx);
    atomic_store(&job.done, 1);
    pthread_join(th, NULL);
    return st;
}

#endif
