/*
 * getload: a fixed-duration `get` load client in C, written from
 * PROTOCOL.md alone, to check flux-bench's own client (bench/src/load.rs).
 *
 *   getload SOCKET KEY VALUE CLIENTS SECONDS WARMUP
 *
 * CLIENTS threads, one blocking connection each. Every connection sends a
 * Hello and checks that the answer is a Welcome frame, does WARMUP untimed
 * Get rounds, waits for the others at a barrier, then sends a Get for KEY,
 * reads exactly the Value frame that carries VALUE and compares it byte for
 * byte, again and again until SECONDS have passed since the first thread
 * passed the barrier (one deadline for all; the round under way at the
 * deadline is finished and counted). Per request: one write(2), one recv(2)
 * (more only if the answer arrives in pieces), one clock_gettime(2)
 * through the vDSO, no allocation: the request, the expected answer, the
 * receive buffer and the latency histogram are built before the barrier.
 *
 * Output on stdout, one `name value` line each (all counts integers, times
 * in nanoseconds):
 *
 *   clients N
 *   wall_ns N              release -> the last thread finished
 *   requests N             timed requests, all threads
 *   client I REQUESTS NS   per thread: its requests and its timed time (from
 *                          its own start after the barrier to its last answer)
 *   p50_ns N / p99_ns N / p999_ns N / max_ns N
 *   hist FLOOR_NS COUNT    every non-empty bucket of the latency histogram
 *
 * Latencies go into a log-linear histogram (64 sub-buckets per power of
 * two: a bucket's lower bound is within 1.6 % of every value in it), and
 * percentiles are reported as the lower bound of their bucket.
 *
 * Exit status 0 when every answer was the expected one; 1 on a wrong
 * answer, an I/O error or a timeout (10 s per read or write), said on
 * stderr by kind and offset, never by the bytes received; 2 on bad
 * arguments.
 *
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE -pthread -o getload getload.c
 * (flux-bench does this at run time; see bench/src/cload.rs).
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Log-linear histogram: values below 64 ns exactly, then 64 buckets per
 * power of two. */
#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define BUCKETS ((64 - SUB_BITS + 1) * SUB)

static const char *socket_path;
static unsigned char *request;      /* one Get frame */
static size_t request_len;
static unsigned char *reply;        /* the expected Value frame */
static size_t reply_len;
static unsigned char hello[64];
static size_t hello_len;
static double seconds;
static long warmup;
static pthread_barrier_t barrier;
/* CLOCK_MONOTONIC ns when the first thread passed the barrier. */
static _Atomic uint64_t release_ns;

struct client {
    pthread_t thread;
    int index;
    int fd;
    unsigned char *buf;             /* reply_len bytes */
    uint64_t hist[BUCKETS];
    uint64_t requests;
    uint64_t timed_ns;
    uint64_t max_ns;
    uint64_t finished_ns;
    int failed;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The release time: set by the first caller after the barrier. */
static uint64_t release(uint64_t mine)
{
    uint64_t expected = 0;
    if (atomic_compare_exchange_strong(&release_ns, &expected, mine))
        return mine;
    return expected;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & (SUB - 1);
    return (e - SUB_BITS + 1) * SUB + sub;
}

static uint64_t bucket_floor(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned e = i / SUB + SUB_BITS - 1;
    return ((uint64_t)1 << e) + ((uint64_t)(i % SUB) << (e - SUB_BITS));
}

static void put_u32le(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u32be(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * (3 - i)));
}

/* A frame: u32 big-endian length, then u32 LE variant index, then one
 * String (u64 LE length and bytes), optionally preceded by a u32 field. */
static unsigned char *frame(uint32_t variant, const uint32_t *field, const char *s,
                            size_t *len_out)
{
    size_t slen = strlen(s);
    size_t payload = 4 + (field ? 4 : 0) + 8 + slen;
    unsigned char *f = malloc(4 + payload);
    if (!f) {
        perror("getload: malloc");
        exit(1);
    }
    unsigned char *p = f;
    put_u32be(p, (uint32_t)payload);
    p += 4;
    put_u32le(p, variant);
    p += 4;
    if (field) {
        put_u32le(p, *field);
        p += 4;
    }
    put_u64le(p, slen);
    p += 8;
    memcpy(p, s, slen);
    *len_out = 4 + payload;
    return f;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads exactly n bytes. 0 on success, -1 on error (errno), -2 on close. */
static int read_exact(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r == 0)
            return -2;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int connect_and_greet(struct client *c)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("getload: socket");
        return -1;
    }
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(socket_path) >= sizeof addr.sun_path) {
        fprintf(stderr, "getload: socket path too long\n");
        close(fd);
        return -1;
    }
    strcpy(addr.sun_path, socket_path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        fprintf(stderr, "getload: client %d: connect: %s\n", c->index, strerror(errno));
        close(fd);
        return -1;
    }
    if (write_all(fd, hello, hello_len) < 0) {
        fprintf(stderr, "getload: client %d: writing Hello: %s\n", c->index, strerror(errno));
        close(fd);
        return -1;
    }
    unsigned char head[8];
    if (read_exact(fd, head, 8) < 0) {
        fprintf(stderr, "getload: client %d: no Welcome frame\n", c->index);
        close(fd);
        return -1;
    }
    uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 |
                   head[3];
    uint32_t variant = head[4] | (uint32_t)head[5] << 8 | (uint32_t)head[6] << 16 |
                       (uint32_t)head[7] << 24;
    if (variant != 0 || len < 4 || len > 65536) {
        fprintf(stderr,
                "getload: client %d: the handshake answer is not a Welcome "
                "(variant %u, %u bytes)\n",
                c->index, variant, len);
        close(fd);
        return -1;
    }
    unsigned char rest[65536];
    if (read_exact(fd, rest, len - 4) < 0) {
        fprintf(stderr, "getload: client %d: Welcome frame cut short\n", c->index);
        close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

/* One Get round: 0, or -1 after saying why on stderr. */
static int round_trip(struct client *c)
{
    if (write_all(c->fd, request, request_len) < 0) {
        fprintf(stderr, "getload: client %d: write failed: %s\n", c->index, strerror(errno));
        return -1;
    }
    size_t got = 0;
    while (got < reply_len) {
        ssize_t r = recv(c->fd, c->buf + got, reply_len - got, 0);
        if (r == 0) {
            fprintf(stderr, "getload: client %d: connection closed after %zu of %zu answer bytes\n",
                    c->index, got, reply_len);
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "getload: client %d: read failed after %zu of %zu answer bytes: %s\n",
                    c->index, got, reply_len, strerror(errno));
            return -1;
        }
        if (memcmp(c->buf + got, reply + got, (size_t)r) != 0) {
            size_t at = got;
            while (c->buf[at] == reply[at])
                at++;
            fprintf(stderr,
                    "getload: client %d: the answer is not the expected Value frame "
                    "(%zu bytes): differs from byte %zu\n",
                    c->index, reply_len, at);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static void *drive(void *arg)
{
    struct client *c = arg;
    int broken = 0;
    for (long i = 0; i < warmup && !broken; i++)
        broken = round_trip(c) < 0;
    pthread_barrier_wait(&barrier);
    /* Every thread stops at the same deadline; a thread woken later than
     * the first times itself from its own start. */
    uint64_t mine = now_ns();
    uint64_t deadline = release(mine) + (uint64_t)(seconds * 1e9);
    uint64_t t = mine;
    while (!broken) {
        if (round_trip(c) < 0) {
            broken = 1;
            break;
        }
        uint64_t now = now_ns();
        uint64_t ns = now - t;
        c->hist[bucket_of(ns)]++;
        if (ns > c->max_ns)
            c->max_ns = ns;
        c->requests++;
        t = now;
        if (now >= deadline)
            break;
    }
    c->finished_ns = now_ns();
    c->timed_ns = c->finished_ns - mine;
    c->failed = broken;
    return NULL;
}

static uint64_t percentile(const uint64_t *hist, uint64_t total, double p)
{
    if (total == 0)
        return 0;
    /* nearest rank, as bench/src/stats.rs */
    uint64_t rank = (uint64_t)(p * (double)total / 100.0 - 1e-9);
    if ((double)rank < p * (double)total / 100.0 - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank)
            return bucket_floor(i);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: getload SOCKET KEY VALUE CLIENTS SECONDS WARMUP\n");
        return 2;
    }
    socket_path = argv[1];
    const char *key = argv[2];
    const char *value = argv[3];
    int clients = atoi(argv[4]);
    seconds = atof(argv[5]);
    warmup = atol(argv[6]);
    if (clients < 1 || clients > 4096 || seconds <= 0 || warmup < 0) {
        fprintf(stderr, "getload: bad CLIENTS, SECONDS or WARMUP\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* PROTOCOL.md: Request 0 Hello {version: u32, client: String},
     * Request 1 Get {name: String}; Response 0 Welcome, 2 Value {value}. */
    uint32_t version = 1;
    unsigned char *h = frame(0, &version, "getload/1", &hello_len);
    memcpy(hello, h, hello_len);
    free(h);
    request = frame(1, NULL, key, &request_len);
    reply = frame(2, NULL, value, &reply_len);

    struct client *cs = calloc((size_t)clients, sizeof *cs);
    if (!cs) {
        perror("getload: calloc");
        return 1;
    }
    for (int i = 0; i < clients; i++) {
        cs[i].index = i;
        cs[i].buf = malloc(reply_len);
        if (!cs[i].buf || connect_and_greet(&cs[i]) < 0)
            return 1;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)clients + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < clients; i++) {
        if (pthread_create(&cs[i].thread, &attr, drive, &cs[i]) != 0) {
            fprintf(stderr, "getload: cannot start thread %d\n", i);
            return 1;
        }
    }
    pthread_barrier_wait(&barrier);
    uint64_t start = release(now_ns());
    static uint64_t hist[BUCKETS];
    uint64_t total = 0, max_ns = 0, wall = 0;
    int failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(cs[i].thread, NULL);
        struct client *c = &cs[i];
        for (unsigned b = 0; b < BUCKETS; b++)
            hist[b] += c->hist[b];
        total += c->requests;
        if (c->max_ns > max_ns)
            max_ns = c->max_ns;
        uint64_t w = c->finished_ns - start;
        if (w > wall)
            wall = w;
        failed |= c->failed;
        close(c->fd);
    }
    printf("clients %d\n", clients);
    printf("wall_ns %llu\n", (unsigned long long)wall);
    printf("requests %llu\n", (unsigned long long)total);
    for (int i = 0; i < clients; i++)
        printf("client %d %llu %llu\n", i, (unsigned long long)cs[i].requests,
               (unsigned long long)cs[i].timed_ns);
    printf("p50_ns %llu\n", (unsigned long long)percentile(hist, total, 50.0));
    printf("p99_ns %llu\n", (unsigned long long)percentile(hist, total, 99.0));
    printf("p999_ns %llu\n", (unsigned long long)percentile(hist, total, 99.9));
    printf("max_ns %llu\n", (unsigned long long)max_ns);
    for (unsigned b = 0; b < BUCKETS; b++)
        if (hist[b])
            printf("hist %llu %llu\n", (unsigned long long)bucket_floor(b),
                   (unsigned long long)hist[b]);
    return failed ? 1 : 0;
}
