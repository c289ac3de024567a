/*
 * replay_serve_http.c - the test_fuzz_serve_http CTest: replays every seed (fuzz/corpus/serve_http)
 * and crasher (fuzz/regressions/serve_http) through the serve_http fuzz harness itself
 * (fuzz/fuzz_serve_http.c: the server's request handling over a fake libmicrohttpd and a stub
 * prediction), each whole and cut short at several lengths. The harness aborts when an invariant
 * breaks; under PC_SANITIZE, ASan/UBSan catch the rest. Not a test_*.c file: CMake builds it apart,
 * with the CLI's sources and without libmicrohttpd (the harness defines the MHD functions it needs).
 */
#include "../fuzz/fuzz_serve_http.c"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

static int replay_dir(const char *kind) {
    const char *src = getenv("PC_SOURCE_DIR");
    if (!src) {
        fprintf(stderr, "replay_serve_http: PC_SOURCE_DIR is not set\n");
        exit(1);
    }
    char dir[4096], path[8192];
    snprintf(dir, sizeof dir, "%s/fuzz/%s/serve_http", src, kind);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "replay_serve_http: cannot open %s\n", path);
            exit(1);
        }
        uint8_t *buf = malloc(1 << 20);
        if (!buf) exit(1);
        size_t len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        for (size_t cut = len / 2; cut < len; cut += 1 + len / 16) LLVMFuzzerTestOneInput(buf, cut);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

int main(void) {
    LLVMFuzzerInitialize(NULL, NULL);
    int seeds = replay_dir("corpus"), crashers = replay_dir("regressions");
    printf("serve_http: %d seeds, %d regressions replayed\n", seeds, crashers);
    srv_pool_stop();
    return seeds > 0 ? 0 : 1;
}
