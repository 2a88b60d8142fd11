/* core.c: error values, checked calls, clock. */
#include "core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int gk_fail(GkErr *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void gk_die_at(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "error at %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (!p) gk_die_at(file, line, "out of host memory allocating %zu bytes; lower --batch-size or --workers", size);
    return p;
}

void *calloc_check(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) gk_die_at(file, line, "out of host memory allocating %zu x %zu bytes", count, size);
    return p;
}

FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *fp = fopen(path, mode);
    if (!fp) gk_die_at(file, line, "cannot open '%s' (mode %s): %s", path, mode, strerror(errno));
    return fp;
}

void fread_check(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, fp);
    if (got != nmemb) {
        if (feof(fp)) gk_die_at(file, line, "unexpected end of file: read %zu of %zu items", got, nmemb);
        gk_die_at(file, line, "read failed after %zu of %zu items: %s", got, nmemb, strerror(errno));
    }
}

void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line) {
    size_t put = fwrite(ptr, size, nmemb, fp);
    if (put != nmemb) gk_die_at(file, line, "write failed after %zu of %zu items: %s (disk full?)", put, nmemb,
                                strerror(errno));
}

void fclose_check(FILE *fp, const char *file, int line) {
    if (fclose(fp) != 0) gk_die_at(file, line, "closing a file failed: %s (disk full?)", strerror(errno));
}

double gk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int gk_cpu_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
