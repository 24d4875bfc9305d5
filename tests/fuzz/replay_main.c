/* replay_main.c: a main() for a fuzz target built without libFuzzer. Every file named on the
 * command line, and every file in every directory named (sorted by name), goes through
 * LLVMFuzzerTestOneInput once, each in a child process, so one failing input does not hide the
 * next: the last line lists every input that failed (a failed FUZZ_ASSERT aborts; a sanitizer
 * report exits non-zero). The corpus replay tests (tests/hardening.cmake) run this under the
 * normal build and under the sanitizer build, so every seed and every past finding is checked on
 * every CI run, with or without clang. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1: read and replayed, 0: cannot read. *failed is set when the input failed. */
static int replay_file(const char *path, int *failed)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 0;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        if (!buf) {
            fprintf(stderr, "replay: out of memory reading %s\n", path);
            exit(2);
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    fclose(f);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        exit(0); /* atexit: the target's temporary files go */
    }
    free(buf);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        fprintf(stderr, "replay: cannot run %s\n", path);
        exit(2);
    }
    *failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (*failed)
        fprintf(stderr, "replay: FAILED: %s (%s %d)\n", path,
                WIFSIGNALED(status) ? "signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return 1;
}

static void replay_one(const char *path, size_t *inputs, size_t *nfailed, int *missing,
                       char **failed_list)
{
    int failed = 0;
    if (!replay_file(path, &failed)) {
        *missing = 1;
        return;
    }
    ++*inputs;
    if (failed) {
        ++*nfailed;
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t len = strlen(*failed_list) + strlen(base) + 2;
        char *grown = realloc(*failed_list, len);
        if (grown) {
            strcat(grown, " ");
            strcat(grown, base);
            *failed_list = grown;
        }
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    size_t inputs = 0, nfailed = 0;
    int missing = 0;
    char *failed_list = calloc(1, 1);
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s does not exist\n", argv[i]);
            missing = 1;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            replay_one(argv[i], &inputs, &nfailed, &missing, &failed_list);
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            missing = 1;
            continue;
        }
        char **names = NULL;
        size_t count = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            names = realloc(names, (count + 1) * sizeof *names);
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            names[count] = malloc(len);
            snprintf(names[count++], len, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof *names, by_name);
        for (size_t k = 0; k < count; k++) {
            replay_one(names[k], &inputs, &nfailed, &missing, &failed_list);
            free(names[k]);
        }
        free(names);
    }
    if (nfailed)
        printf("replay: %zu of %zu inputs FAILED:%s\n", nfailed, inputs, failed_list);
    else
        printf("replay: %zu inputs, all passed\n", inputs);
    free(failed_list);
    /* An empty or missing corpus would make this test pass while checking nothing. */
    return nfailed || missing || inputs == 0 ? 1 : 0;
}
