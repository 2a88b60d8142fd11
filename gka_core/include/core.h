/* core.h: error values, checked calls and small helpers shared by every part of GKAVision.
 *
 * Two kinds of failure, two mechanisms:
 * - Bad input from a user (a config, a weights file, an image, a dataset folder) is an error VALUE:
 *   the function fills a GkErr and returns -1, and only the command-line layer prints and exits.
 * - A failed system or library call that leaves nothing sensible to do (out of memory, a CUDA error,
 *   a shape mismatch between ops, which is a programming error) goes through a checked-call macro
 *   that prints file and line and exits. */
#ifndef GKA_CORE_H
#define GKA_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An error value: a one-line message that names the file, the item and the expected form. */
typedef struct GkErr {
    char msg[1024];
} GkErr;

/* Formats the message into err (if not NULL) and returns -1, so callers write `return gk_fail(...)`. */
int gk_fail(GkErr *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prints "file:line: message" to stderr and exits with status 1. */
void gk_die_at(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4), noreturn))
#endif
    ;
#define gk_die(...) gk_die_at(__FILE__, __LINE__, __VA_ARGS__)

/* Programming-error check (shapes, dtypes, devices): always on, also in release builds. */
#define GK_CHECK(cond, ...)                                                                                  \
    do {                                                                                                     \
        if (!(cond)) gk_die_at(__FILE__, __LINE__, __VA_ARGS__);                                             \
    } while (0)

void *malloc_check(size_t size, const char *file, int line);
void *calloc_check(size_t count, size_t size, const char *file, int line);
FILE *fopen_check(const char *path, const char *mode, const char *file, int line);
void fread_check(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line);
void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line);
void fclose_check(FILE *fp, const char *file, int line);
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)
#define callocCheck(count, size) calloc_check(count, size, __FILE__, __LINE__)
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)
#define freadCheck(ptr, size, nmemb, fp) fread_check(ptr, size, nmemb, fp, __FILE__, __LINE__)
#define fwriteCheck(ptr, size, nmemb, fp) fwrite_check(ptr, size, nmemb, fp, __FILE__, __LINE__)
#define fcloseCheck(fp) fclose_check(fp, __FILE__, __LINE__)

/* Monotonic wall clock in seconds. */
double gk_now(void);

/* Number of worker threads the CPU backend uses (OpenMP), 1 without OpenMP. */
int gk_cpu_threads(void);

#ifdef __cplusplus
}
#endif
#endif
