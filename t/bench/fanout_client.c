/*
 * Fan-out benchmark client for t/bench/fanout.sh: one process, two modes.
 *
 *   fanout_client sub -p PORT -u PATH -n N [-s] [-x] [-w] [-P PARALLEL]
 *                     [-T SECS] [-A ADDRS]
 *
 *     Holds N Server-Sent Events streams on 127.0.0.1:PORT with one epoll
 *     loop (non-blocking sockets; chunked or raw bodies).  Parses frames
 *     minimally: a frame with a data line is an event; from its JSON it
 *     takes "pt" (publisher's send time, microseconds of CLOCK_REALTIME),
 *     "ph" (phase), "pc" (publisher connection), "pn" (that connection's
 *     counter) and, with -s, "seq" (the server's position, which must go
 *     up by exactly 1 per event on every stream: nothing missed, nothing
 *     twice).  -P bounds the connects in flight, -T the set-up time.
 *     -A spreads the streams over ADDRS source addresses, 127.0.0.1 to
 *     127.0.0.ADDRS (one source address has about 28 000 ports for one
 *     destination: 100 000 streams need at least 4).
 *     -w opens WebSockets instead (RFC 6455 handshake, a 101): a text
 *     frame is an event unless it is a {"control":...} message; pings
 *     are answered.
 *     -x only holds N requests whose headers never end (no blank line):
 *     what nginx itself spends on a request in flight, for comparison.
 *     Prints "READY ..." once every stream answered (or failed).
 *
 *     Commands, one per line on stdin:
 *       PHASE id          reset the counters; events of phase id count
 *       END expected idle_ms max_ms
 *                         wait until every open stream has expected
 *                         unique events of the phase, or nothing arrived
 *                         for idle_ms, or max_ms passed; then print
 *                         "RESULT key=value ..."
 *       QUIT              close everything and exit
 *     EOF on stdin is QUIT.
 *
 *   fanout_client pub -p PORT -u PATH -r RATE -d SECS -c CONNS -g PHASE
 *                     [-b BYTES] [-j] [-G GRACE]
 *
 *     POSTs BYTES-byte JSON events (default 300) over CONNS keep-alive
 *     connections: RATE events/s on a fixed schedule (open loop: an event
 *     that finds no idle connection goes out late, and is counted), or
 *     with RATE 0 as fast as each connection gets its answers, for SECS
 *     seconds (events of a schedule that fell behind and are not out
 *     by then are counted as "unsent").  Each body carries its send time:
 *       {"type":"bench.tick","payload":{"data":{"pt":<us>,"ph":<phase>,
 *        "pc":<conn>,"pn":<n>,"pad":"xx..."}}}
 *     -j sends "Accept: application/json" (Nchan answers shorter).
 *     After SECS it waits up to GRACE seconds (default 30) for the answers
 *     still due; those it gives up on are counted as "abandoned" (the
 *     server may still store and deliver them).
 *     Prints "PUB key=value ...".
 *
 * Only 127.0.0.1.  Every loop is bounded in time.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define MAXPC        64             /* publisher connections */
#define RBUF         (256 * 1024)
#define HDR_MAX      8192
#define FRAME_MAX    (1024 * 1024)

/* latency histogram: 1 us steps below 100 ms, then 1 ms steps to 1000 s */
#define H_FINE       100000
#define H_COARSE     1000000
#define H_SIZE       (H_FINE + H_COARSE)


static int64_t
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static int64_t
mono_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static int64_t
cpu_us(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);
    return (int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000
           + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}


static void
die(const char *msg)
{
    fprintf(stderr, "fanout_client: %s: %s\n", msg, strerror(errno));
    exit(2);
}


static int
set_nonblock(int fd)
{
    int  fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}


/*
 * a non-blocking connect to 127.0.0.1:port from 127.0.0.src (0: the
 * kernel's choice); -1 on an immediate failure
 */

static int
open_conn(int port, int src)
{
    int                 fd, one = 1;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (src > 0) {
        /* the port is picked at connect(), per destination */
#ifdef IP_BIND_ADDRESS_NO_PORT
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof(one));
#endif
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t) src - 1);

        if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0) {
            close(fd);
            return -1;
        }
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    return fd;
}


/* a decimal integer right after key (e.g. "\"pt\":") within [p, end) */

static int
find_int(const char *p, const char *end, const char *key, size_t klen,
    int64_t *out, const char **after)
{
    int          neg = 0;
    int64_t      v = 0;
    const char  *k;

    k = memmem(p, end - p, key, klen);
    if (k == NULL) {
        return -1;
    }

    p = k + klen;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }

    if (p >= end || *p < '0' || *p > '9') {
        return -1;
    }

    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
    }

    *out = neg ? -v : v;

    if (after) {
        *after = p;
    }

    return 0;
}


/* ------------------------------------------------------------------ */
/* subscribers */

enum { S_IDLE, S_CONNECTING, S_HEADERS, S_BODY, S_CLOSED };
enum { C_SIZE, C_EXT, C_DATA, C_DATA_CR, C_DATA_LF, C_END };

typedef struct {
    int        fd;
    uint8_t    state;
    uint8_t    chunked;
    uint8_t    cstate;
    uint8_t    in_phase;        /* open when the phase started */
    int64_t    chunk_left;
    char      *hdr;
    uint32_t   hlen;
    char      *fbuf;            /* the unfinished frame */
    uint32_t   flen;
    uint32_t   fcap;

    int64_t    last_seq;        /* -1: none yet (kept across phases) */

    /* this phase */
    int64_t    rx;
    int64_t    dup;
    int32_t    last_pn[MAXPC];
} sub_t;


static struct {
    int        port;
    char      *path;
    int        n;
    int        check_seq;
    int        hold;
    int        ws;
    int        parallel;
    int        setup_secs;
    int        addrs;           /* source addresses, 0: one, the kernel's */
    int        started;         /* streams started, for the address */

    int        ep;
    sub_t     *subs;
    char      *rbuf;
    char       req[1024];
    size_t     reqlen;

    int        open;            /* streams with a 200 and not closed */
    int        failed;          /* never got a 200 */
    int        pending;         /* connecting or awaiting headers */
    int        next;            /* next to start */
    int        quit;

    int64_t    rx_time;         /* CLOCK_REALTIME of the current read */

    /* the phase */
    int64_t    phase;
    int64_t    ph_start_mono;
    int64_t    ph_start_cpu;
    int64_t    ph_first_rx;     /* mono, 0: none */
    int64_t    ph_last_rx;
    int64_t    rx, dup, gaps, foreign, seq_gaps, seq_dups, ctrl, resets;
    int64_t    bytes, closed, bad;
    int64_t    lat_n, lat_sum, lat_max, lat_neg;
    uint64_t  *hist;

    /* an END in progress */
    int        ending;
    int64_t    end_expected;
    int64_t    end_idle_us;
    int64_t    end_deadline;
    int64_t    end_at_mono;     /* when END came: the publisher is done */
    int64_t    end_rx;          /* rx when END came */
    int64_t    end_cpu;
    int64_t    last_progress;
} S;


static void sub_close(sub_t *c, int counted);
static void event(sub_t *c, const char *f, const char *d, const char *end);


static void
hist_add(int64_t v)
{
    int64_t  i;

    if (v < 0) {
        S.lat_neg++;
        v = 0;
    }

    S.lat_n++;
    S.lat_sum += v;

    if (v > S.lat_max) {
        S.lat_max = v;
    }

    i = v < H_FINE ? v : H_FINE + (v - H_FINE) / 1000;
    if (i >= H_SIZE) {
        i = H_SIZE - 1;
    }

    S.hist[i]++;
}


static int64_t
hist_pct(double q)
{
    int64_t   i, want, sum = 0;

    if (S.lat_n == 0) {
        return -1;
    }

    want = (int64_t) (q * (double) S.lat_n + 0.999999);
    if (want < 1) {
        want = 1;
    }

    for (i = 0; i < H_SIZE; i++) {
        sum += (int64_t) S.hist[i];
        if (sum >= want) {
            return i < H_FINE ? i : H_FINE + (i - H_FINE) * 1000 + 500;
        }
    }

    return S.lat_max;
}


static void
frame(sub_t *c, const char *f, size_t len)
{
    const char  *d, *end;

    if (len == 0) {
        return;
    }

    end = f + len;

    if (len >= 5 && memcmp(f, "data:", 5) == 0) {
        d = f;

    } else {
        d = memmem(f, len, "\ndata:", 6);
        if (d == NULL) {
            S.ctrl++;           /* a comment, retry:, ... */
            return;
        }
    }

    if ((len >= 6 && memcmp(f, "event:", 6) == 0)
        || memmem(f, d - f, "\nevent:", 7))
    {
        /* a named event: "reset" or "ready", not one of ours */
        if (memmem(f, len, "event: reset", 12)) {
            S.resets++;
        }

        S.ctrl++;
        return;
    }

    event(c, f, d, end);
}


/* an event's JSON, from f (its frame) to end, its data from d */

static void
event(sub_t *c, const char *f, const char *d, const char *end)
{
    int64_t      pt, ph, pc, pn, seq;
    const char  *after;

    if (find_int(d, end, "\"pt\":", 5, &pt, &after) != 0
        || find_int(after, end, "\"ph\":", 5, &ph, &after) != 0
        || find_int(after, end, "\"pc\":", 5, &pc, &after) != 0
        || find_int(after, end, "\"pn\":", 5, &pn, &after) != 0
        || pc < 0 || pc >= MAXPC)
    {
        S.bad++;
        return;
    }

    if (S.check_seq) {
        if (find_int(f, end, "\"seq\":", 6, &seq, NULL) != 0) {
            S.bad++;
            return;

        } else if (c->last_seq >= 0) {
            if (seq > c->last_seq + 1) {
                S.seq_gaps += seq - c->last_seq - 1;

            } else if (seq <= c->last_seq) {
                S.seq_dups++;
            }
        }

        if (seq > c->last_seq) {
            c->last_seq = seq;
        }
    }

    if (ph != S.phase) {
        S.foreign++;
        return;
    }

    c->rx++;
    S.rx++;

    if (S.ph_first_rx == 0) {
        S.ph_first_rx = mono_us();
    }

    if (pn <= c->last_pn[pc]) {
        c->dup++;
        S.dup++;

    } else {
        if (pn > c->last_pn[pc] + 1) {
            S.gaps += pn - c->last_pn[pc] - 1;
        }

        c->last_pn[pc] = (int32_t) pn;
    }

    hist_add(S.rx_time - pt);
}


static int
frame_append(sub_t *c, const char *p, size_t n)
{
    size_t  cap;
    char   *b;

    if (c->flen + n > c->fcap) {
        cap = c->fcap ? c->fcap : 1024;

        while (cap < c->flen + n) {
            cap *= 2;
        }

        if (cap > FRAME_MAX) {
            return -1;
        }

        b = realloc(c->fbuf, cap);
        if (b == NULL) {
            return -1;
        }

        c->fbuf = b;
        c->fcap = (uint32_t) cap;
    }

    memcpy(c->fbuf + c->flen, p, n);
    c->flen += (uint32_t) n;

    return 0;
}


/* body bytes: cut into frames at blank lines ("\n\n") */

static int
sse_feed(sub_t *c, const char *p, size_t n)
{
    const char  *e;
    size_t       take;

    if (n == 0) {
        return 0;
    }

    if (c->flen) {
        if (c->fbuf[c->flen - 1] == '\n' && p[0] == '\n') {
            frame(c, c->fbuf, c->flen - 1);
            c->flen = 0;
            p++;
            n--;

        } else {
            e = memmem(p, n, "\n\n", 2);
            if (e == NULL) {
                return frame_append(c, p, n);
            }

            take = e - p;
            if (frame_append(c, p, take) != 0) {
                return -1;
            }

            frame(c, c->fbuf, c->flen);
            c->flen = 0;
            p = e + 2;
            n -= take + 2;
        }
    }

    while (n) {
        e = memmem(p, n, "\n\n", 2);
        if (e == NULL) {
            return frame_append(c, p, n);
        }

        frame(c, p, e - p);
        n -= e - p + 2;
        p = e + 2;
    }

    return 0;
}


/* a server's WebSocket frames (never masked); -1: closed */

static int
ws_frame(sub_t *c, const unsigned char *b, size_t len, size_t *used)
{
    size_t         hl, pl;
    unsigned char  pong[2 + 4 + 125];
    const char    *p;

    if (len < 2) {
        return 0;
    }

    pl = b[1] & 0x7f;
    hl = 2;

    if (pl == 126) {
        if (len < 4) {
            return 0;
        }
        pl = (size_t) b[2] << 8 | b[3];
        hl = 4;

    } else if (pl == 127) {
        if (len < 10) {
            return 0;
        }
        pl = 0;
        for (hl = 2; hl < 10; hl++) {
            pl = pl << 8 | b[hl];
        }
    }

    if (len < hl + pl) {
        return 0;
    }

    *used = hl + pl;
    p = (const char *) b + hl;

    switch (b[0] & 0x0f) {

    case 0x1:
        if (pl >= 11 && memcmp(p, "{\"control\":", 11) == 0) {
            if (memmem(p, pl, "\"control\":\"reset\"", 18)) {
                S.resets++;
            }
            S.ctrl++;

        } else {
            event(c, p, p, p + pl);
        }
        break;

    case 0x8:
        return -1;

    case 0x9:
        /* a pong with the ping's payload, masked with a zero key */
        if (pl <= 125) {
            pong[0] = 0x8a;
            pong[1] = (unsigned char) (0x80 | pl);
            memset(pong + 2, 0, 4);
            memcpy(pong + 6, p, pl);
            if (write(c->fd, pong, 6 + pl) != (ssize_t) (6 + pl)) {
                return -1;
            }
        }
        S.ctrl++;
        break;

    default:
        S.ctrl++;
    }

    return 1;
}


static int
ws_feed(sub_t *c, const char *p, size_t n)
{
    int     rc;
    size_t  used, off;

    if (frame_append(c, p, n) != 0) {
        return -1;
    }

    off = 0;

    for ( ;; ) {
        rc = ws_frame(c, (const unsigned char *) c->fbuf + off,
                      c->flen - off, &used);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            break;
        }
        off += used;
    }

    if (off) {
        memmove(c->fbuf, c->fbuf + off, c->flen - off);
        c->flen -= (uint32_t) off;
    }

    return 0;
}


/* body bytes as read: de-chunked in place, then framed; -1: stream over */

static int
body(sub_t *c, char *p, size_t n)
{
    char    *r, *w, *end, ch;
    size_t   k;
    int      v;

    if (S.ws) {
        return ws_feed(c, p, n);
    }

    if (!c->chunked) {
        return sse_feed(c, p, n);
    }

    r = p;
    w = p;
    end = p + n;

    while (r < end) {
        switch (c->cstate) {

        case C_SIZE:
            ch = *r++;
            if (ch >= '0' && ch <= '9') {
                v = ch - '0';
            } else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') {
                v = (ch | 0x20) - 'a' + 10;
            } else if (ch == '\n') {
                c->cstate = c->chunk_left ? C_DATA : C_END;
                if (c->cstate == C_END) {
                    goto done;
                }
                break;
            } else {
                c->cstate = C_EXT;      /* ';' extension or '\r' */
                break;
            }
            c->chunk_left = c->chunk_left * 16 + v;
            break;

        case C_EXT:
            if (*r++ == '\n') {
                c->cstate = c->chunk_left ? C_DATA : C_END;
                if (c->cstate == C_END) {
                    goto done;
                }
            }
            break;

        case C_DATA:
            k = end - r;
            if ((int64_t) k > c->chunk_left) {
                k = (size_t) c->chunk_left;
            }
            if (w != r) {
                memmove(w, r, k);
            }
            w += k;
            r += k;
            c->chunk_left -= k;
            if (c->chunk_left == 0) {
                c->cstate = C_DATA_CR;
            }
            break;

        case C_DATA_CR:
            c->cstate = (*r++ == '\r') ? C_DATA_LF : C_SIZE;
            break;

        case C_DATA_LF:
            r++;
            c->cstate = C_SIZE;
            break;

        default:
            goto done;
        }
    }

done:

    if (sse_feed(c, p, w - p) != 0) {
        return -1;
    }

    return c->cstate == C_END ? -1 : 0;
}


static void
sub_start(sub_t *c)
{
    struct epoll_event  ev;

    c->fd = open_conn(S.port, S.addrs ? 1 + S.started++ % S.addrs : 0);
    if (c->fd < 0) {
        c->state = S_CLOSED;
        S.failed++;
        return;
    }

    c->state = S_CONNECTING;
    c->last_seq = -1;
    S.pending++;

    ev.events = EPOLLOUT;
    ev.data.ptr = c;

    if (epoll_ctl(S.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        die("epoll_ctl");
    }
}


static void
sub_close(sub_t *c, int counted)
{
    if (c->state == S_CLOSED) {
        return;
    }

    if (c->state == S_BODY) {
        S.open--;
        if (counted && c->in_phase) {
            S.closed++;
        }

    } else {
        S.pending--;
        S.failed++;
    }

    c->state = S_CLOSED;
    close(c->fd);
    c->fd = -1;
    free(c->hdr);
    c->hdr = NULL;
    free(c->fbuf);
    c->fbuf = NULL;
    c->flen = c->fcap = 0;
}


static void
sub_headers_done(sub_t *c, size_t hend)
{
    char   *h, *p, *e;
    size_t  rest;

    h = c->hdr;
    h[hend - 1] = '\0';

    if (strncmp(h, "HTTP/1.", 7) != 0
        || strncmp(h + 8, S.ws ? " 101" : " 200", 4) != 0)
    {
        fprintf(stderr, "fanout_client: stream answered: %.60s\n", h);
        sub_close(c, 0);
        return;
    }

    /* a case-insensitive header search, enough for our two servers */
    for (p = h; (p = strchr(p, '\n')) != NULL; p++) {
        if (strncasecmp(p + 1, "transfer-encoding:", 18) == 0) {
            e = strchr(p + 1, '\n');
            if (e && memmem(p + 1, e - p - 1, "chunked", 7)) {
                c->chunked = 1;
            }
        }
    }

    c->state = S_BODY;
    S.pending--;
    S.open++;

    rest = c->hlen - hend;
    p = c->hdr;
    c->hdr = NULL;

    if (rest && body(c, p + hend, rest) != 0) {
        free(p);
        sub_close(c, 1);
        return;
    }

    free(p);
}


static void
sub_event(sub_t *c, uint32_t events)
{
    int                 err;
    char               *e;
    ssize_t             n;
    socklen_t           len;
    struct epoll_event  ev;

    if (c->state == S_CONNECTING) {
        err = 0;
        len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            sub_close(c, 0);
            return;
        }

        n = write(c->fd, S.req, S.reqlen);
        if (n != (ssize_t) S.reqlen) {
            sub_close(c, 0);
            return;
        }

        if (S.hold) {
            /* the request never ends: nothing to wait for */
            c->state = S_BODY;
            S.pending--;
            S.open++;

            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.ptr = c;

            if (epoll_ctl(S.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
                die("epoll_ctl");
            }

            return;
        }

        c->state = S_HEADERS;
        c->hdr = malloc(HDR_MAX);
        if (c->hdr == NULL) {
            die("malloc");
        }

        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;

        if (epoll_ctl(S.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
            die("epoll_ctl");
        }

        return;
    }

    if (c->state == S_HEADERS) {
        n = read(c->fd, c->hdr + c->hlen, HDR_MAX - 1 - c->hlen);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN) {
                return;
            }
            sub_close(c, 0);
            return;
        }

        c->hlen += (uint32_t) n;
        c->hdr[c->hlen] = '\0';

        e = strstr(c->hdr, "\r\n\r\n");
        if (e) {
            sub_headers_done(c, e + 4 - c->hdr);

        } else if (c->hlen >= HDR_MAX - 1) {
            sub_close(c, 0);
        }

        return;
    }

    if (c->state != S_BODY) {
        return;
    }

    n = read(c->fd, S.rbuf, RBUF);

    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        sub_close(c, 1);
        return;
    }

    if (n == 0) {
        sub_close(c, 1);
        return;
    }

    S.rx_time = now_us();
    S.bytes += n;

    if (body(c, S.rbuf, (size_t) n) != 0) {
        sub_close(c, 1);
    }
}


static void
phase_start(int64_t id)
{
    int  i;

    S.phase = id;
    S.ph_start_mono = mono_us();
    S.ph_start_cpu = cpu_us();
    S.ph_first_rx = 0;
    S.ph_last_rx = 0;
    S.rx = S.dup = S.gaps = S.foreign = S.seq_gaps = S.seq_dups = 0;
    S.ctrl = S.resets = S.bytes = S.closed = S.bad = 0;
    S.lat_n = S.lat_sum = S.lat_max = S.lat_neg = 0;
    memset(S.hist, 0, H_SIZE * sizeof(uint64_t));

    for (i = 0; i < S.n; i++) {
        S.subs[i].rx = 0;
        S.subs[i].dup = 0;
        memset(S.subs[i].last_pn, 0xff, sizeof(S.subs[i].last_pn));
        S.subs[i].in_phase = S.subs[i].state == S_BODY;
    }
}


static int
phase_complete(void)
{
    int  i;

    for (i = 0; i < S.n; i++) {
        if (S.subs[i].state == S_BODY
            && S.subs[i].rx - S.subs[i].dup < S.end_expected)
        {
            return 0;
        }
    }

    return 1;
}


static void
phase_report(const char *why)
{
    int      i, in_phase = 0;
    int64_t  missing = 0, uniq, elapsed, done_at, lat_mean;

    for (i = 0; i < S.n; i++) {
        if (!S.subs[i].in_phase) {
            continue;
        }

        in_phase++;
        uniq = S.subs[i].rx - S.subs[i].dup;

        if (uniq < S.end_expected) {
            missing += S.end_expected - uniq;
        }
    }

    done_at = S.ph_last_rx ? S.ph_last_rx : mono_us();
    elapsed = done_at - S.ph_start_mono;
    lat_mean = S.lat_n ? S.lat_sum / S.lat_n : -1;

    printf("RESULT phase=%" PRId64 " why=%s streams=%d open=%d closed=%" PRId64
           " expected=%" PRId64 " rx=%" PRId64 " dup=%" PRId64
           " gaps=%" PRId64 " missing=%" PRId64 " foreign=%" PRId64
           " seq_gaps=%" PRId64 " seq_dups=%" PRId64 " resets=%" PRId64
           " bad=%" PRId64 " ctrl=%" PRId64 " bytes=%" PRId64
           " last_rx_us=%" PRId64 " end_cmd_us=%" PRId64
           " rx_at_end_cmd=%" PRId64 " wait_us=%" PRId64
           " lat_n=%" PRId64 " lat_mean_us=%" PRId64 " lat_p50_us=%" PRId64
           " lat_p90_us=%" PRId64 " lat_p99_us=%" PRId64
           " lat_p999_us=%" PRId64 " lat_max_us=%" PRId64
           " lat_negative=%" PRId64 " cpu_us=%" PRId64 "\n",
           S.phase, why, in_phase, S.open, S.closed,
           S.end_expected * in_phase, S.rx, S.dup, S.gaps, missing, S.foreign,
           S.seq_gaps, S.seq_dups, S.resets, S.bad, S.ctrl, S.bytes,
           elapsed, S.end_at_mono - S.ph_start_mono, S.end_rx,
           mono_us() - S.end_at_mono,
           S.lat_n, lat_mean, hist_pct(0.50), hist_pct(0.90),
           hist_pct(0.99), hist_pct(0.999), S.lat_max, S.lat_neg,
           cpu_us() - S.ph_start_cpu);
    fflush(stdout);

    S.ending = 0;
}


static void
command(char *line)
{
    long long  a = 0, b = 0, c = 0;

    if (sscanf(line, "PHASE %lld", &a) == 1) {
        phase_start(a);

    } else if (sscanf(line, "END %lld %lld %lld", &a, &b, &c) == 3) {
        S.ending = 1;
        S.end_expected = a;
        S.end_idle_us = b * 1000;
        S.end_at_mono = mono_us();
        S.end_deadline = S.end_at_mono + c * 1000;
        S.end_rx = S.rx;
        S.last_progress = S.end_at_mono;

    } else if (strncmp(line, "QUIT", 4) == 0) {
        S.quit = 1;

    } else if (line[0] != '\0') {
        fprintf(stderr, "fanout_client: unknown command '%s'\n", line);
    }
}


static void
read_commands(void)
{
    static char    buf[4096];
    static size_t  len;
    ssize_t        n;
    char          *nl, *p;

    n = read(0, buf + len, sizeof(buf) - 1 - len);

    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        S.quit = 1;             /* EOF */
        return;
    }

    len += n;
    buf[len] = '\0';
    p = buf;

    while ((nl = strchr(p, '\n')) != NULL) {
        *nl = '\0';
        command(p);
        p = nl + 1;
    }

    len -= p - buf;
    memmove(buf, p, len);

    if (len == sizeof(buf) - 1) {
        len = 0;
    }
}


static int
run_sub(void)
{
    int                 i, k, nev, timeout, ready = 0;
    int64_t             t0, now, rx_before;
    struct epoll_event  ev, *events;
    static int          stdin_tag;

    S.subs = calloc(S.n, sizeof(sub_t));
    S.rbuf = malloc(RBUF);
    S.hist = calloc(H_SIZE, sizeof(uint64_t));
    events = calloc(4096, sizeof(struct epoll_event));

    if (S.subs == NULL || S.rbuf == NULL || S.hist == NULL || !events) {
        die("malloc");
    }

    if (S.ws) {
        S.reqlen = (size_t) snprintf(S.req, sizeof(S.req),
                                     "GET %s HTTP/1.1\r\n"
                                     "Host: 127.0.0.1:%d\r\n"
                                     "Upgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: "
                                     "dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     "Sec-WebSocket-Version: 13\r\n\r\n",
                                     S.path, S.port);

    } else {
        S.reqlen = (size_t) snprintf(S.req, sizeof(S.req),
                                     "GET %s HTTP/1.1\r\n"
                                     "Host: 127.0.0.1:%d\r\n"
                                     "Accept: text/event-stream\r\n"
                                     "Cache-Control: no-cache\r\n"
                                     "%s", S.path, S.port,
                                     S.hold ? "" : "\r\n");
    }

    S.ep = epoll_create1(EPOLL_CLOEXEC);
    if (S.ep < 0) {
        die("epoll_create1");
    }

    set_nonblock(0);
    ev.events = EPOLLIN;
    ev.data.ptr = &stdin_tag;

    if (epoll_ctl(S.ep, EPOLL_CTL_ADD, 0, &ev) < 0) {
        die("epoll_ctl stdin");
    }

    for (i = 0; i < S.n; i++) {
        S.subs[i].fd = -1;
        S.subs[i].last_seq = -1;
        memset(S.subs[i].last_pn, 0xff, sizeof(S.subs[i].last_pn));
    }

    S.phase = -1;
    t0 = mono_us();

    /* bounded: set-up by -T, a phase's end by its max_ms */

    while (!S.quit) {

        while (S.next < S.n && S.pending < S.parallel) {
            sub_start(&S.subs[S.next++]);
        }

        if (!ready && S.next == S.n && S.pending == 0) {
            ready = 1;
            printf("READY open=%d failed=%d ms=%" PRId64 "\n", S.open,
                   S.failed, (mono_us() - t0) / 1000);
            fflush(stdout);
        }

        if (!ready && mono_us() - t0 > (int64_t) S.setup_secs * 1000000) {
            for (i = 0; i < S.n; i++) {
                if (S.subs[i].state == S_CONNECTING
                    || S.subs[i].state == S_HEADERS)
                {
                    sub_close(&S.subs[i], 0);
                }
            }

            for (; S.next < S.n; S.next++) {
                S.subs[S.next].state = S_CLOSED;
                S.failed++;
            }

            continue;
        }

        timeout = S.ending || !ready ? 50 : 1000;
        nev = epoll_wait(S.ep, events, 4096, timeout);

        if (nev < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }

        rx_before = S.rx;

        for (k = 0; k < nev; k++) {
            if (events[k].data.ptr == &stdin_tag) {
                read_commands();
                continue;
            }

            sub_event(events[k].data.ptr, events[k].events);
        }

        now = mono_us();

        if (S.rx != rx_before) {
            S.ph_last_rx = now;
            S.last_progress = now;
        }

        if (S.ending) {
            if (phase_complete()) {
                phase_report("complete");

            } else if (now - S.last_progress >= S.end_idle_us) {
                phase_report("idle");

            } else if (now >= S.end_deadline) {
                phase_report("deadline");
            }
        }
    }

    for (i = 0; i < S.n; i++) {
        if (S.subs[i].fd >= 0) {
            close(S.subs[i].fd);
        }
    }

    printf("BYE open=%d\n", S.open);
    fflush(stdout);

    return 0;
}


/* ------------------------------------------------------------------ */
/* publisher */

enum { P_DOWN, P_CONNECTING, P_IDLE, P_WAIT };

typedef struct {
    int       fd;
    int       id;
    int       state;
    int64_t   pn;
    int64_t   sent_at;      /* mono */
    char      buf[16384];
    size_t    len;
} pubc_t;


static struct {
    int        port;
    char      *path;
    int        rate;
    int        secs;
    int        conns;
    int        bytes;
    int64_t    phase;
    int        accept_json;
    int        grace;

    int        ep;
    pubc_t    *c;

    int64_t    sent, ok, non2xx, errors, reconnects, late, max_late;
    int64_t    rtt_sum, rtt_max;
    int64_t   *rtts;
    int64_t    nrtt, cap_rtt;
    int64_t    first_status, bad_status_example;
} P;


static int
pub_connect(pubc_t *c)
{
    struct epoll_event  ev;

    c->fd = open_conn(P.port, 0);
    if (c->fd < 0) {
        c->state = P_DOWN;
        return -1;
    }

    c->state = P_CONNECTING;
    c->len = 0;

    ev.events = EPOLLOUT;
    ev.data.ptr = c;

    if (epoll_ctl(P.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        die("epoll_ctl");
    }

    return 0;
}


static void
pub_drop(pubc_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }

    if (c->state == P_WAIT) {
        P.errors++;
    }

    c->state = P_DOWN;
}


static void
pub_send(pubc_t *c)
{
    int      hl, bl, pad;
    char     head[512], body[8192], *p;
    int64_t  pt;
    ssize_t  n;
    struct epoll_event  ev;

    pt = now_us();

    bl = snprintf(body, sizeof(body),
                  "{\"type\":\"bench.tick\",\"payload\":{\"data\":{"
                  "\"pt\":%" PRId64 ",\"ph\":%" PRId64 ",\"pc\":%d,"
                  "\"pn\":%" PRId64 ",\"pad\":\"",
                  pt, P.phase, c->id, c->pn);

    pad = P.bytes - bl - (int) sizeof("\"}}}") + 1;
    if (pad < 0) {
        pad = 0;
    }

    if (bl + pad + 5 > (int) sizeof(body)) {
        pad = (int) sizeof(body) - bl - 5;
    }

    memset(body + bl, 'x', pad);
    bl += pad;
    memcpy(body + bl, "\"}}}", 4);
    bl += 4;

    hl = snprintf(head, sizeof(head),
                  "POST %s HTTP/1.1\r\n"
                  "Host: 127.0.0.1:%d\r\n"
                  "Content-Type: application/json\r\n"
                  "%s"
                  "Content-Length: %d\r\n"
                  "\r\n", P.path, P.port,
                  P.accept_json ? "Accept: application/json\r\n" : "", bl);

    p = c->buf;             /* the answer is read into buf afterwards */
    memcpy(p, head, hl);
    memcpy(p + hl, body, bl);

    n = write(c->fd, p, hl + bl);

    if (n != hl + bl) {
        /* a 300-byte request into an idle socket: short is an error */
        P.errors++;
        pub_drop(c);
        return;
    }

    c->pn++;
    c->len = 0;
    c->state = P_WAIT;
    c->sent_at = mono_us();
    P.sent++;

    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(P.ep, EPOLL_CTL_MOD, c->fd, &ev);
}


/* 1: a whole answer in buf (status in *status), 0: more to read */

static int
pub_parse(pubc_t *c, int *status, size_t *used, int *close_after)
{
    char   *e, *p;
    long    cl = -1;

    *close_after = 0;

    c->buf[c->len] = '\0';

    e = strstr(c->buf, "\r\n\r\n");
    if (e == NULL) {
        return 0;
    }

    if (strncmp(c->buf, "HTTP/1.", 7) != 0) {
        return -1;
    }

    *status = atoi(c->buf + 9);

    for (p = c->buf; p < e && (p = strchr(p, '\n')) != NULL && p < e; p++) {
        if (strncasecmp(p + 1, "content-length:", 15) == 0) {
            cl = strtol(p + 16, NULL, 10);

        } else if (strncasecmp(p + 1, "connection: close", 17) == 0) {
            *close_after = 1;       /* e.g. after keepalive_requests */
        }
    }

    if (cl < 0) {
        return -1;          /* both servers send Content-Length */
    }

    if ((size_t) (e + 4 - c->buf) + cl > c->len) {
        return 0;
    }

    *used = (e + 4 - c->buf) + cl;

    return 1;
}


static void
pub_event(pubc_t *c, uint32_t events)
{
    int                 err, status, rc, close_after;
    size_t              used;
    ssize_t             n;
    socklen_t           len;
    int64_t             rtt;
    struct epoll_event  ev;

    if (c->state == P_CONNECTING) {
        err = 0;
        len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            P.errors++;
            pub_drop(c);
            return;
        }

        c->state = P_IDLE;
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        epoll_ctl(P.ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }

    n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);

    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    if (n <= 0 || c->state != P_WAIT) {
        pub_drop(c);
        return;
    }

    c->len += n;
    rc = pub_parse(c, &status, &used, &close_after);

    if (rc == 0) {
        if (c->len >= sizeof(c->buf) - 1) {
            P.errors++;
            pub_drop(c);
        }
        return;
    }

    if (rc < 0) {
        P.errors++;
        pub_drop(c);
        return;
    }

    rtt = mono_us() - c->sent_at;
    P.rtt_sum += rtt;

    if (rtt > P.rtt_max) {
        P.rtt_max = rtt;
    }

    if (P.nrtt < P.cap_rtt) {
        P.rtts[P.nrtt++] = rtt;
    }

    if (status >= 200 && status <= 299) {
        P.ok++;

    } else {
        P.non2xx++;
        if (P.bad_status_example == 0) {
            P.bad_status_example = status;
        }
    }

    c->state = P_IDLE;
    c->len = 0;
    (void) used;

    if (close_after) {
        pub_drop(c);            /* P_IDLE: not an error; reconnected */
    }
}


static int
cmp64(const void *a, const void *b)
{
    int64_t  x = *(const int64_t *) a, y = *(const int64_t *) b;

    return x < y ? -1 : x > y;
}


static int
run_pub(void)
{
    int                 i, k, nev, busy, sent_any, blocked;
    int64_t             t0, now, stop, send_stop, due, total, next_k, wait_us;
    int64_t             p50 = -1, p99 = -1, abandoned = 0;
    struct timespec     ts;
    struct epoll_event  events[256];

    P.c = calloc(P.conns, sizeof(pubc_t));
    P.cap_rtt = 4000000;
    P.rtts = malloc(P.cap_rtt * sizeof(int64_t));

    if (P.c == NULL || P.rtts == NULL) {
        die("malloc");
    }

    P.ep = epoll_create1(EPOLL_CLOEXEC);
    if (P.ep < 0) {
        die("epoll_create1");
    }

    for (i = 0; i < P.conns; i++) {
        P.c[i].id = i;
        P.c[i].fd = -1;
        if (pub_connect(&P.c[i]) != 0) {
            P.errors++;
        }
    }

    /* connected first (bounded: 5 s), so that the clock starts fair */
    t0 = mono_us();

    for ( ;; ) {
        busy = 0;
        for (i = 0; i < P.conns; i++) {
            busy += P.c[i].state == P_CONNECTING;
        }

        if (busy == 0 || mono_us() - t0 > 5000000) {
            break;
        }

        nev = epoll_wait(P.ep, events, 256, 50);
        for (k = 0; k < nev; k++) {
            pub_event(events[k].data.ptr, events[k].events);
        }
    }

    total = P.rate > 0 ? (int64_t) P.rate * P.secs : -1;
    t0 = mono_us();
    stop = t0 + (int64_t) P.secs * 1000000;
    send_stop = stop + 100000;      /* a last event a little late still goes */
    next_k = 0;

    for ( ;; ) {
        now = mono_us();

        if (now >= stop + (int64_t) P.grace * 1000000) {
            break;      /* answers overdue by GRACE s: give up on them */
        }

        sent_any = 1;
        blocked = 0;

        while (sent_any) {
            sent_any = 0;

            if (P.rate > 0) {
                /* a schedule that fell behind is cut at the end, too */
                if (next_k >= total || now >= send_stop) {
                    break;
                }

                due = t0 + next_k * 1000000 / P.rate;
                if (now < due) {
                    break;
                }

            } else if (now >= stop) {
                break;
            }

            for (i = 0; i < P.conns; i++) {
                if (P.c[i].state == P_DOWN && now < stop) {
                    P.reconnects++;
                    pub_connect(&P.c[i]);
                }

                if (P.c[i].state != P_IDLE) {
                    continue;
                }

                if (P.rate > 0) {
                    due = t0 + next_k * 1000000 / P.rate;
                    if (now - due > 1000) {
                        P.late++;
                        if (now - due > P.max_late) {
                            P.max_late = now - due;
                        }
                    }
                }

                pub_send(&P.c[i]);
                next_k++;
                sent_any = 1;

                if (P.rate > 0) {
                    break;
                }
            }

            if (!sent_any) {
                blocked = 1;    /* due, but no idle connection */
            }
        }

        busy = 0;
        for (i = 0; i < P.conns; i++) {
            busy += P.c[i].state == P_WAIT;
        }

        if (now >= stop && busy == 0
            && (P.rate == 0 || next_k >= total || now >= send_stop))
        {
            break;
        }

        if (P.rate > 0 && next_k < total && !blocked && now < send_stop) {
            due = t0 + next_k * 1000000 / P.rate;
            wait_us = due - now;
            if (wait_us < 0) {
                wait_us = 0;
            }
        } else {
            wait_us = 10000;
        }

        if (wait_us > 10000) {
            wait_us = 10000;
        }

        ts.tv_sec = 0;
        ts.tv_nsec = wait_us * 1000;

        nev = epoll_pwait2(P.ep, events, 256, &ts, NULL);
        if (nev < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_pwait2");
        }

        for (k = 0; k < nev; k++) {
            pub_event(events[k].data.ptr, events[k].events);
        }
    }

    now = mono_us();

    for (i = 0; i < P.conns; i++) {
        abandoned += P.c[i].state == P_WAIT;
    }

    if (P.nrtt) {
        qsort(P.rtts, P.nrtt, sizeof(int64_t), cmp64);
        p50 = P.rtts[(P.nrtt - 1) / 2];
        p99 = P.rtts[(int64_t) ((double) (P.nrtt - 1) * 0.99)];
    }

    printf("PUB phase=%" PRId64 " rate=%d secs=%d conns=%d body_bytes=%d"
           " sent=%" PRId64 " unsent=%" PRId64 " ok=%" PRId64
           " abandoned=%" PRId64
           " non2xx=%" PRId64
           " first_bad_status=%" PRId64 " errors=%" PRId64
           " reconnects=%" PRId64 " late=%" PRId64 " max_late_us=%" PRId64
           " elapsed_us=%" PRId64 " rtt_p50_us=%" PRId64
           " rtt_p99_us=%" PRId64 " rtt_max_us=%" PRId64 " per_conn=",
           P.phase, P.rate, P.secs, P.conns, P.bytes, P.sent,
           total > next_k ? total - next_k : 0, P.ok, abandoned, P.non2xx, P.bad_status_example, P.errors, P.reconnects, P.late,
           P.max_late, now - t0, p50, p99, P.rtt_max);

    for (i = 0; i < P.conns; i++) {
        printf("%s%" PRId64, i ? "," : "", P.c[i].pn);
        if (P.c[i].fd >= 0) {
            close(P.c[i].fd);
        }
    }

    printf("\n");
    fflush(stdout);

    return P.errors || P.non2xx ? 1 : 0;
}


static void
usage(void)
{
    fprintf(stderr,
            "usage: fanout_client sub -p PORT -u PATH -n N [-s] [-x] [-w]"
            " [-P PAR] [-T SECS] [-A ADDRS]\n"
            "       fanout_client pub -p PORT -u PATH -r RATE -d SECS"
            " -c CONNS -g PHASE [-b BYTES] [-j] [-G GRACE]\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int  o;

    if (argc < 2) {
        usage();
    }

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (strcmp(argv[1], "sub") == 0) {
        S.parallel = 256;
        S.setup_secs = 120;

        optind = 2;
        while ((o = getopt(argc, argv, "p:u:n:sxwP:T:A:")) != -1) {
            switch (o) {
            case 'p': S.port = atoi(optarg); break;
            case 'u': S.path = optarg; break;
            case 'n': S.n = atoi(optarg); break;
            case 's': S.check_seq = 1; break;
            case 'x': S.hold = 1; break;
            case 'w': S.ws = 1; break;
            case 'P': S.parallel = atoi(optarg); break;
            case 'T': S.setup_secs = atoi(optarg); break;
            case 'A': S.addrs = atoi(optarg); break;
            default: usage();
            }
        }

        if (S.port <= 0 || S.path == NULL || S.n <= 0 || S.parallel <= 0
            || S.addrs < 0 || S.addrs > 254)
        {
            usage();
        }

        return run_sub();
    }

    if (strcmp(argv[1], "pub") == 0) {
        P.bytes = 300;
        P.conns = 1;
        P.rate = -1;
        P.secs = 0;
        P.grace = 30;

        optind = 2;
        while ((o = getopt(argc, argv, "p:u:r:d:c:g:b:jG:")) != -1) {
            switch (o) {
            case 'p': P.port = atoi(optarg); break;
            case 'u': P.path = optarg; break;
            case 'r': P.rate = atoi(optarg); break;
            case 'd': P.secs = atoi(optarg); break;
            case 'c': P.conns = atoi(optarg); break;
            case 'g': P.phase = atoll(optarg); break;
            case 'b': P.bytes = atoi(optarg); break;
            case 'j': P.accept_json = 1; break;
            case 'G': P.grace = atoi(optarg); break;
            default: usage();
            }
        }

        if (P.port <= 0 || P.path == NULL || P.rate < 0 || P.secs <= 0
            || P.conns <= 0 || P.conns > MAXPC)
        {
            usage();
        }

        return run_pub();
    }

    usage();
    return 2;
}
