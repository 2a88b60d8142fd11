/* launch.c: ranks from a local fork or from torchrun-style variables; the id over pipes or TCP (launch.h). */
#define _POSIX_C_SOURCE 200809L
#include "launch.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

RankInfo rank_single(void) {
    RankInfo r;
    memset(&r, 0, sizeof r);
    r.world = 1;
    return r;
}

/* ---- whole reads and writes on a descriptor ---- */
static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- TCP rendezvous ---- */
int rendezvous_serve(int port, const uint8_t *blob, size_t n, int clients, double timeout_s, GkErr *err) {
    int s = socket(AF_INET6, SOCK_STREAM, 0), v6 = 1;
    if (s < 0) s = socket(AF_INET, SOCK_STREAM, 0), v6 = 0;
    if (s < 0) return gk_fail(err, "rendezvous: no socket (%s)", strerror(errno));
    int one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 clients too */
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6, a.sin6_addr = in6addr_any, a.sin6_port = htons((uint16_t)port);
        rc = bind(s, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET, a.sin_addr.s_addr = htonl(INADDR_ANY), a.sin_port = htons((uint16_t)port);
        rc = bind(s, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0 || listen(s, clients > 0 ? clients : 1) != 0) {
        int e = errno;
        close(s);
        return gk_fail(err, "rendezvous: cannot listen on port %d (%s)", port, strerror(e));
    }
    double deadline = gk_now() + timeout_s;
    for (int served = 0; served < clients;) {
        double left = deadline - gk_now();
        struct pollfd p = {s, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0) {
            close(s);
            return gk_fail(err, "rendezvous: %d of %d ranks arrived on port %d within %.0f s", served,
                           clients, port, timeout_s);
        }
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        int bad = write_all(c, blob, n);
        close(c);
        if (!bad) served++;
    }
    close(s);
    return 0;
}

int rendezvous_fetch(const char *host, int port, uint8_t *blob, size_t n, double timeout_s, GkErr *err) {
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    double deadline = gk_now() + timeout_s;
    const char *why = "no answer";
    do {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC, hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(host, ports, &hints, &res);
        if (g != 0) return gk_fail(err, "rendezvous: cannot resolve %s (%s)", host, gai_strerror(g));
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            int c = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
            if (c < 0) continue;
            if (connect(c, a->ai_addr, a->ai_addrlen) == 0) {
                int bad = read_all(c, blob, n);
                close(c);
                freeaddrinfo(res);
                if (!bad) return 0;
                return gk_fail(err, "rendezvous: %s:%d closed before sending the id", host, port);
            }
            why = strerror(errno);
            close(c);
        }
        freeaddrinfo(res);
        sleep_ms(200); /* rank 0 may not be listening yet */
    } while (gk_now() < deadline);
    return gk_fail(err, "rendezvous: no rank 0 at %s:%d within %.0f s (%s)", host, port, timeout_s, why);
}

/* ---- torchrun-style variables ---- */
static int env_int(const char *name, int *out, GkErr *err) {
    const char *v = getenv(name);
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > 1 << 20)
        return gk_fail(err, "%s=%s is not a rank or a count", name, v);
    *out = (int)x;
    return 1;
}

#define RENDEZVOUS_TIMEOUT_S 600.0

int launch_from_env(RankInfo *r, GkErr *err) {
    *r = rank_single();
    int has_rank = env_int("RANK", &r->rank, err), has_world = env_int("WORLD_SIZE", &r->world, err);
    if (has_rank < 0 || has_world < 0) return -1;
    if (!has_rank && !has_world) return 0;
    if (!has_rank || !has_world) return gk_fail(err, "RANK and WORLD_SIZE must be set together");
    if (r->world < 1 || r->rank >= r->world)
        return gk_fail(err, "RANK=%d is not a rank of WORLD_SIZE=%d", r->rank, r->world);
    if (env_int("LOCAL_RANK", &r->local_rank, err) < 0) return -1;
    if (r->world == 1) return 1;
    const char *addr = getenv("MASTER_ADDR");
    int port = 0;
    if (!addr || env_int("MASTER_PORT", &port, err) != 1 || port < 1 || port > 65535)
        return gk_fail(err, "WORLD_SIZE=%d needs MASTER_ADDR and MASTER_PORT (rank 0's host and a free port)",
                       r->world);
    if (r->rank == 0) {
        if (dist_new_id(r->id, err) != 0) return -1;
        return rendezvous_serve(port, r->id, DIST_ID_BYTES, r->world - 1, RENDEZVOUS_TIMEOUT_S, err) == 0
                   ? 1
                   : -1;
    }
    return rendezvous_fetch(addr, port, r->id, DIST_ID_BYTES, RENDEZVOUS_TIMEOUT_S, err) == 0 ? 1 : -1;
}

/* ---- gkav train --gpus N ---- */
int launch_local(int n, RankInfo *r, GkErr *err) {
    *r = rank_single();
    if (n < 1) return gk_fail(err, "--gpus %d: need at least one", n);
    int(*pipes)[2] = mallocCheck(sizeof(int[2]) * (size_t)n);
    pid_t *pids = mallocCheck(sizeof(pid_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        if (pipe(pipes[i]) != 0) gk_die("pipe: %s", strerror(errno));
    fflush(stdout), fflush(stderr);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] < 0) gk_die("fork: %s", strerror(errno));
        if (pids[i] == 0) { /* rank i */
            r->rank = r->local_rank = i, r->world = n;
            for (int k = 0; k < n; k++) {
                if (k != i) close(pipes[k][0]);
                if (i != 0 || k == 0) close(pipes[k][1]); /* only rank 0 writes, to the others */
            }
            int rc = 0;
            if (i == 0) {
                if (dist_new_id(r->id, err) != 0) rc = -1;
                for (int k = 1; k < n; k++) {
                    if (rc == 0 && write_all(pipes[k][1], r->id, DIST_ID_BYTES) != 0)
                        rc = gk_fail(err, "rank 0: could not hand the id to rank %d", k);
                    close(pipes[k][1]);
                }
            } else if (read_all(pipes[i][0], r->id, DIST_ID_BYTES) != 0) {
                rc = gk_fail(err, "rank 0 stopped before sharing the communicator id");
            }
            close(pipes[i][0]);
            free(pipes), free(pids);
            return rc == 0 ? 1 : -1;
        }
    }
    for (int k = 0; k < n; k++)
        close(pipes[k][0]), close(pipes[k][1]);
    free(pipes);
    int failed = -1, status_failed = 0, left = n;
    while (left > 0) {
        int status;
        pid_t p = waitpid(-1, &status, 0);
        if (p < 0) {
            if (errno == EINTR) continue;
            break;
        }
        int i = 0;
        while (i < n && pids[i] != p)
            i++;
        if (i == n) continue;
        pids[i] = 0, left--;
        int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && failed < 0) {
            failed = i, status_failed = status;
            for (int k = 0; k < n; k++) /* the others would wait for it in NCCL forever */
                if (pids[k] > 0) kill(pids[k], SIGTERM);
        }
    }
    free(pids);
    if (failed < 0) return 0;
    if (WIFEXITED(status_failed))
        return gk_fail(err, "rank %d of %d failed (exit status %d); the other ranks were stopped", failed, n,
                       WEXITSTATUS(status_failed));
    return gk_fail(err, "rank %d of %d was killed by signal %d; the other ranks were stopped", failed, n,
                   WTERMSIG(status_failed));
}
