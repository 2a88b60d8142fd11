/* expect.h: the check macros of the test programs. A failed check prints FAIL with file, line and what
 * failed, counts in `failures`, and the test goes on (main returns failures != 0). */
#ifndef GKA_TESTS_EXPECT_H
#define GKA_TESTS_EXPECT_H

#include <stdio.h>
#include <string.h>

static int failures = 0;

#define EXPECT(cond)                                                                                         \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                           \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

/* Fails the test unless msg contains want; prints both. */
#define EXPECT_MSG(msg, want)                                                                                \
    do {                                                                                                     \
        if (!strstr((msg), (want))) {                                                                        \
            printf("FAIL %s:%d: expected '%s' in '%s'\n", __FILE__, __LINE__, (want), (msg));                \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

/* EXPECT with a printf-style explanation. */
#define EXPECTF(cond, ...)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                      \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

#endif
