/* test_launch: how training processes find their rank and share the communicator id (train/launch.h):
 * the TCP rendezvous (one server, several clients, a timeout), torchrun-style variables (accepted and
 * malformed), and `--gpus N`'s fork launcher (a failing rank is reported and the others stopped; with NCCL
 * every rank gets the same id). The collectives themselves need two GPUs: bench/throughput_8gpu. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "expect.h"
#include "launch.h"

#define CLIENTS 3

static int port, serve_clients = CLIENTS;
static uint8_t blob[DIST_ID_BYTES];

typedef struct {
    uint8_t got[DIST_ID_BYTES];
    int rc;
    GkErr err;
} Client;

static void *serve(void *arg) {
    Client *c = arg;
    c->rc = rendezvous_serve(port, blob, sizeof blob, serve_clients, 20.0, &c->err);
    return NULL;
}

static void *fetch(void *arg) {
    Client *c = arg;
    c->rc = rendezvous_fetch("localhost", port, c->got, sizeof c->got, 20.0, &c->err);
    return NULL;
}

static void test_rendezvous(void) {
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 37 + 11);
    port = 20000 + (int)(getpid() % 20000);
    Client server, clients[CLIENTS];
    pthread_t ts, tc[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) /* clients first: they must wait for the server */
        pthread_create(&tc[i], NULL, fetch, &clients[i]);
    usleep(300000);
    pthread_create(&ts, NULL, serve, &server);
    pthread_join(ts, NULL);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(tc[i], NULL);
    EXPECTF(server.rc == 0, "serve: %s", server.err.msg);
    for (int i = 0; i < CLIENTS; i++) {
        EXPECTF(clients[i].rc == 0, "fetch %d: %s", i, clients[i].err.msg);
        EXPECT(clients[i].rc != 0 || !memcmp(clients[i].got, blob, sizeof blob));
    }
    /* nobody listening: a timeout with a message naming the address */
    Client late;
    port += 1;
    double t0 = gk_now();
    late.rc = rendezvous_fetch("localhost", port, late.got, sizeof late.got, 0.6, &late.err);
    EXPECT(late.rc == -1);
    EXPECT_MSG(late.err.msg, "no rank 0 at localhost:");
    EXPECT(gk_now() - t0 < 5.0);
    /* a server whose ranks never come */
    late.rc = rendezvous_serve(port, blob, sizeof blob, 2, 0.3, &late.err);
    EXPECT(late.rc == -1);
    EXPECT_MSG(late.err.msg, "0 of 2 ranks arrived");
}

static void set_env(const char *rank, const char *world, const char *addr, const char *mport) {
    const char *names[4] = {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
    const char *vals[4] = {rank, world, addr, mport};
    for (int i = 0; i < 4; i++) {
        if (vals[i])
            setenv(names[i], vals[i], 1);
        else
            unsetenv(names[i]);
    }
}

static void test_env(void) {
    RankInfo r;
    GkErr err;
    set_env(NULL, NULL, NULL, NULL);
    EXPECT(launch_from_env(&r, &err) == 0 && r.world == 1 && r.rank == 0);
    set_env("0", "1", NULL, NULL);
    EXPECT(launch_from_env(&r, &err) == 1 && r.world == 1);
    set_env("1", NULL, NULL, NULL);
    EXPECT(launch_from_env(&r, &err) == -1);
    EXPECT_MSG(err.msg, "RANK and WORLD_SIZE must be set together");
    set_env("2", "2", NULL, NULL);
    EXPECT(launch_from_env(&r, &err) == -1);
    EXPECT_MSG(err.msg, "RANK=2 is not a rank of WORLD_SIZE=2");
    set_env("x", "2", NULL, NULL);
    EXPECT(launch_from_env(&r, &err) == -1);
    EXPECT_MSG(err.msg, "RANK=x");
    set_env("1", "2", NULL, NULL);
    EXPECT(launch_from_env(&r, &err) == -1);
    EXPECT_MSG(err.msg, "needs MASTER_ADDR and MASTER_PORT");
    set_env("1", "2", "localhost", "70000");
    EXPECT(launch_from_env(&r, &err) == -1);
    EXPECT_MSG(err.msg, "MASTER_PORT");
    /* rank 1 of 2 takes the id from a rank 0 served here */
    char ps[16];
    port = 40000 + (int)(getpid() % 20000);
    snprintf(ps, sizeof ps, "%d", port);
    set_env("1", "2", "127.0.0.1", ps);
    setenv("LOCAL_RANK", "1", 1);
    Client server;
    pthread_t ts;
    memset(blob, 0x5a, sizeof blob);
    serve_clients = 1;
    pthread_create(&ts, NULL, serve, &server);
    EXPECT(launch_from_env(&r, &err) == 1);
    EXPECT(r.rank == 1 && r.world == 2 && r.local_rank == 1 && !memcmp(r.id, blob, sizeof blob));
    pthread_join(ts, NULL);
    EXPECTF(server.rc == 0, "serve: %s", server.err.msg);
    set_env(NULL, NULL, NULL, NULL);
    unsetenv("LOCAL_RANK");
}

static void test_local(void) {
    RankInfo r;
    GkErr err;
    /* every rank exits with a failure: the launcher names one and returns */
    double t0 = gk_now();
    int rc = launch_local(3, &r, &err);
    if (r.world > 1) _exit(rc == 1 ? (r.rank == 1 ? 3 : 0) : 9); /* a child: rank 1 fails */
    if (rc == -1 && !dist_available()) { /* without NCCL, rank 0 cannot make an id and every rank fails */
        EXPECT_MSG(err.msg, "of 3 failed");
    } else {
        EXPECTF(rc == -1, "launch_local: %d", rc);
        EXPECT_MSG(err.msg, "rank 1 of 3 failed (exit status 3)");
    }
    EXPECT(gk_now() - t0 < 20.0);
    /* a rank that fails stops the ones that would wait for it forever */
    t0 = gk_now();
    rc = launch_local(2, &r, &err);
    if (r.world > 1) {
        if (rc == 1 && r.rank == 1) sleep(60);
        _exit(4);
    }
    if (rc == -1 && !dist_available()) {
        EXPECT_MSG(err.msg, "of 2 failed (exit status 4)");
    } else {
        EXPECT_MSG(err.msg, "rank 0 of 2 failed (exit status 4)");
    }
    EXPECT(gk_now() - t0 < 20.0);
    if (!dist_available()) return;
    /* with NCCL: each rank checks it got rank 0's id by sending it to its parent through exit status */
    rc = launch_local(2, &r, &err);
    if (r.world > 1) {
        int nonzero = rc == 1 ? 0 : -1;
        for (int i = 0; i < DIST_ID_BYTES; i++)
            nonzero |= r.id[i];
        _exit(nonzero > 0 ? 0 : 5);
    }
    EXPECTF(rc == 0, "launch_local(2): %s", err.msg);
}

int main(void) {
    test_rendezvous();
    test_env();
    test_local();
    printf("test_launch: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
