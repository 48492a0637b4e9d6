// Collective watchdog (see CollectiveWatchdog in Sources/ELIPDistributed/Communicator.swift).
//
// The training thread brackets every blocking collective with elip_watchdog_enter/leave. A helper
// thread watches that wait: once it has lasted `timeout` seconds, it asks every other rank over a
// private communicator whether it is alive (a ping its own watchdog thread answers, with how long
// that rank's training thread has been waiting). A rank that does not answer within `grace`
// seconds is stopped, hung in the kernel or unreachable: the job is aborted with a message naming
// it. If all answer and every one of them has also waited `timeout` seconds, the ranks are stuck in
// mismatched collectives: aborted too. Otherwise some rank is still computing (a long first step,
// rank 0 writing a checkpoint) and the wait goes on, checked again every `timeout` seconds.
// Needs MPI_THREAD_MULTIPLE (this thread calls MPI while the training thread is inside MPI).
#include "CMPIShim.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { TAG_PING = 27301, TAG_PONG = 27302 };

static pthread_mutex_t wd_mutex = PTHREAD_MUTEX_INITIALIZER;
static int wd_depth;            // nesting of enter/leave on the training thread
static long wd_serial;          // counts waits, so a new wait is told from a long one
static double wd_since;         // when the current outermost wait began
static char wd_op[128];
static char wd_context[128];

static pthread_t wd_thread;
static int wd_running;
static volatile int wd_stop;
static MPI_Comm wd_comm;
static int wd_rank, wd_size, wd_exit_code;
static double wd_timeout, wd_grace;

static double wd_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void elip_watchdog_enter(const char *operation) {
    pthread_mutex_lock(&wd_mutex);
    if (wd_depth++ == 0) {
        wd_since = wd_now();
        wd_serial++;
        snprintf(wd_op, sizeof wd_op, "%s", operation);
    }
    pthread_mutex_unlock(&wd_mutex);
}

void elip_watchdog_leave(void) {
    pthread_mutex_lock(&wd_mutex);
    if (wd_depth > 0) wd_depth--;
    pthread_mutex_unlock(&wd_mutex);
}

void elip_watchdog_set_context(const char *context) {
    pthread_mutex_lock(&wd_mutex);
    snprintf(wd_context, sizeof wd_context, "%s", context);
    pthread_mutex_unlock(&wd_mutex);
}

// Seconds the training thread has been waiting (-1: not waiting); copies the operation.
static double wd_wait(long *serial, char *op, char *context) {
    pthread_mutex_lock(&wd_mutex);
    double age = wd_depth > 0 ? wd_now() - wd_since : -1;
    if (serial) *serial = wd_serial;
    if (op) snprintf(op, sizeof wd_op, "%s", wd_op);
    if (context) snprintf(context, sizeof wd_context, "%s", wd_context);
    pthread_mutex_unlock(&wd_mutex);
    return age;
}

static void wd_abort(const char *message) {
    fprintf(stderr, "[rank %d] error: collective watchdog: %s Aborting the job (timeout %.0f s: "
            "train.collective_timeout_minutes or --collective-timeout-minutes).\n", wd_rank, message, wd_timeout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, wd_exit_code);
    _exit(wd_exit_code);
}

static void *wd_main(void *unused) {
    (void)unused;
    int n = wd_size;
    double ping_in = 0;
    double *replies = calloc((size_t)n * 2, sizeof(double));  // per destination, valid until sent
    double *pongs = calloc((size_t)n * 2, sizeof(double));
    MPI_Request *pong_req = calloc((size_t)n, sizeof(MPI_Request));
    int *answered = calloc((size_t)n, sizeof(int));
    double ping_out = 0;
    MPI_Request ping_req;
    MPI_Irecv(&ping_in, 1, MPI_DOUBLE, MPI_ANY_SOURCE, TAG_PING, wd_comm, &ping_req);
    int probing = 0;
    double probe_start = 0, next_check = wd_timeout;
    long checked_serial = -1;
    char op[128], context[128];

    while (!wd_stop) {
        usleep(50000);
        // Answer a ping: our own wait, so the asking rank can tell computing from stuck.
        int flag = 0;
        MPI_Status st;
        MPI_Test(&ping_req, &flag, &st);
        if (flag && !wd_stop) {
            int src = st.MPI_SOURCE;
            replies[2 * src] = ping_in;
            replies[2 * src + 1] = wd_wait(NULL, NULL, NULL);
            MPI_Request r;
            MPI_Isend(&replies[2 * src], 2, MPI_DOUBLE, src, TAG_PONG, wd_comm, &r);
            MPI_Request_free(&r);
            MPI_Irecv(&ping_in, 1, MPI_DOUBLE, MPI_ANY_SOURCE, TAG_PING, wd_comm, &ping_req);
        }

        long serial;
        double age = wd_wait(&serial, op, context);
        if (serial != checked_serial) {  // a new wait: first check after `timeout`
            checked_serial = serial;
            next_check = wd_timeout;
        }
        if (!probing && age >= next_check) {
            ping_out += 1;
            for (int r = 0; r < n; r++) {
                answered[r] = r == wd_rank;
                if (r == wd_rank) continue;
                MPI_Request s;
                MPI_Isend(&ping_out, 1, MPI_DOUBLE, r, TAG_PING, wd_comm, &s);
                MPI_Request_free(&s);
                MPI_Irecv(&pongs[2 * r], 2, MPI_DOUBLE, r, TAG_PONG, wd_comm, &pong_req[r]);
            }
            probing = 1;
            probe_start = wd_now();
        }
        if (!probing) continue;
        int all = 1;
        for (int r = 0; r < n; r++) {
            if (answered[r]) continue;
            int done = 0;
            MPI_Test(&pong_req[r], &done, MPI_STATUS_IGNORE);
            if (done) answered[r] = 1; else all = 0;
        }
        age = wd_wait(&serial, op, context);
        if (all) {
            probing = 0;
            if (age < wd_timeout || serial != checked_serial) continue;
            int everyone_waits = 1;
            for (int r = 0; r < n; r++)
                if (r != wd_rank && pongs[2 * r + 1] < wd_timeout) everyone_waits = 0;
            if (everyone_waits) {
                char msg[512];
                snprintf(msg, sizeof msg, "rank %d has waited %.0f s in %s (%s) and every rank answers that it is "
                         "waiting in a collective too: the ranks are stuck in mismatched collectives.",
                         wd_rank, age, op, context);
                wd_abort(msg);
            }
            next_check = age + wd_timeout;  // someone is computing: look again later
        } else if (age >= wd_timeout && serial == checked_serial && wd_now() - probe_start > wd_grace) {
            char missing[256] = "";
            size_t used = 0;
            for (int r = 0; r < n && used < sizeof missing - 16; r++)
                if (!answered[r]) used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%d", used ? ", " : "", r);
            char msg[640];
            snprintf(msg, sizeof msg, "rank %d has waited %.0f s in %s (%s); rank(s) %s did not answer a liveness "
                     "check within %.0f s (stopped, e.g. SIGSTOP, hung, or unreachable).",
                     wd_rank, age, op, context, missing, wd_grace);
            wd_abort(msg);
        }
    }
    // Stopping (before MPI_Finalize): withdraw the receives still posted.
    MPI_Cancel(&ping_req);
    MPI_Wait(&ping_req, MPI_STATUS_IGNORE);
    if (probing)
        for (int r = 0; r < n; r++)
            if (!answered[r]) { MPI_Cancel(&pong_req[r]); MPI_Wait(&pong_req[r], MPI_STATUS_IGNORE); }
    return NULL;
}

int elip_watchdog_start(MPI_Comm comm, double timeout_seconds, double grace_seconds, int exit_code) {
    if (wd_running) return 0;
    int rc = MPI_Comm_dup(comm, &wd_comm);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_rank(wd_comm, &wd_rank);
    MPI_Comm_size(wd_comm, &wd_size);
    wd_timeout = timeout_seconds;
    wd_grace = grace_seconds;
    wd_exit_code = exit_code;
    wd_stop = 0;
    if (pthread_create(&wd_thread, NULL, wd_main, NULL) != 0) return -1;
    wd_running = 1;
    return 0;
}

void elip_watchdog_stop(void) {
    if (!wd_running) return;
    wd_stop = 1;
    pthread_join(wd_thread, NULL);
    wd_running = 0;
}
