/* A tiny thread pool for native layer chunks: the caller and `workers - 1` threads claim
 * tasks from one array; helpers spin briefly between layers (a layer's chunks follow each
 * other within microseconds) and then sleep on a condition variable. One pool_run at a
 * time per pool; the caller runs tasks too, so a descheduled helper never blocks a layer.
 *
 * Each thread first takes the tasks of its own contiguous share of the array (the caller
 * the first, helper i the (i+1)-th), then helps with the others' (work stealing from the
 * front of each share). Layers split their work in the same order (channel or row ranges
 * first to last), so the part of a tensor a thread wrote in one layer is mostly the part it
 * reads in the next, still in its own core's L2, instead of whichever chunk the thread
 * happened to grab first.
 *
 * A task is a function taking a pointer to its argument struct (the *_task wrappers, args.h). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

typedef void (*task_fn)(const void *args);
typedef struct {
    task_fn fn;
    const void *args;
} task;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t *threads;
    long nthreads;
    long spin_ns;
    const task *tasks;
    long ntasks;
    long nshares;   /* shares of the task array: the caller's and each helper's */
    long *ticket;   /* per share: (run number << 32) | its next task; claimed by CAS (atomic) */
    int shared_only;/* 1: every thread claims from share 0 (one shared ticket; benches) */
    long done;      /* tasks finished in this run (atomic) */
    long generation;/* run number (atomic) */
    long wakes;     /* pool_wake calls: a sleeping helper wakes and spins again */
    long active;    /* between pool_wake and pool_rest (atomic): an inference is on, the
                     * helpers spin without a time limit */
    int closing;
} pool;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* The end of share `s` of `n` tasks, ceil((s + 1) n / S): the caller, already running,
 * takes the larger part of an uneven split */
static long share_end(const pool *p, long s, long n) {
    if (__atomic_load_n(&p->shared_only, __ATOMIC_ACQUIRE)) return s ? 0 : n;
    return ((s + 1) * n + p->nshares - 1) / p->nshares;
}

/* Claim and run tasks of run `gen` until none is left: this thread's own share first, then
 * the others'. A thread that arrives late (its run is over, another may have started)
 * fails the run-number check and claims nothing. */
static void drain(pool *p, long gen, long me) {
    long n = __atomic_load_n(&p->ntasks, __ATOMIC_ACQUIRE);
    for (long j = 0; j < p->nshares; j++) {
        long s = (me + j) % p->nshares, end = share_end(p, s, n);
        for (;;) {
            long cur = __atomic_load_n(&p->ticket[s], __ATOMIC_ACQUIRE);
            if ((cur >> 32) != (gen & 0x7fffffff)) return;
            long k = cur & 0xffffffffL;
            if (k >= end) break;
            if (!__atomic_compare_exchange_n(&p->ticket[s], &cur, cur + 1, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
                continue;
            const task *t = __atomic_load_n(&p->tasks, __ATOMIC_ACQUIRE) + k;
            t->fn(t->args);
            __atomic_fetch_add(&p->done, 1, __ATOMIC_ACQ_REL);
        }
    }
}

typedef struct {
    pool *p;
    long me;
} helper_arg;

static void *helper(void *arg) {
    pool *p = ((helper_arg *)arg)->p;
    long me = ((helper_arg *)arg)->me, seen = 0;
    free(arg);
    for (;;) {
        long deadline = now_ns() + p->spin_ns;
        long gen;
        while ((gen = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE)) == seen
               && !__atomic_load_n(&p->closing, __ATOMIC_ACQUIRE)
               && (__atomic_load_n(&p->active, __ATOMIC_ACQUIRE) || now_ns() < deadline))
            sched_yield();
        if (gen == seen) {
            pthread_mutex_lock(&p->lock);
            long wakes = p->wakes;
            while ((gen = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE)) == seen
                   && !p->closing && p->wakes == wakes)
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (__atomic_load_n(&p->closing, __ATOMIC_ACQUIRE)) return NULL;
        if (gen == seen) continue; /* pool_wake: spin for the run that follows */
        seen = gen;
        drain(p, gen, me);
    }
}

void *pool_create(long workers, long spin_us) {
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->spin_ns = spin_us * 1000;
    p->nthreads = workers > 1 ? workers - 1 : 0;
    p->nshares = p->nthreads + 1;
    p->threads = calloc((size_t)(p->nthreads ? p->nthreads : 1), sizeof(pthread_t));
    p->ticket = calloc((size_t)p->nshares, sizeof(long));
    if (!p->threads || !p->ticket) {
        free(p->threads);
        free(p->ticket);
        free(p);
        return NULL;
    }
    for (long i = 0; i < p->nthreads; i++) {
        helper_arg *a = malloc(sizeof *a);
        if (a) *a = (helper_arg){p, i + 1};
        if (!a || pthread_create(&p->threads[i], NULL, helper, a) != 0) {
            free(a);
            p->nthreads = i;
            break;
        }
    }
    /* the shares stay one per planned thread: a helper that failed to start leaves its
     * share to be stolen by the others */
    return p;
}

/* An inference starts (pool_wake) and ends (pool_rest). In between the helpers spin for the
 * next layer however long the caller takes (its Python between layers, a layer it runs
 * alone), as onnxruntime's pool spins during a session run: a helper that slept went back to
 * its core only after the hypervisor scheduled its idle vCPU again, 0.1 to over 1 ms on the
 * 2-core VM we develop on, and in a run after an idle pause it slept 13-24 times (once or
 * never back to back). pool_wake also wakes a helper that slept between inferences, while
 * the caller copies the inputs; after pool_rest they sleep once spin_us passes without work.
 * Calls nest by count (several runs of one context's pool cannot overlap; a count keeps a
 * stray pair harmless). The spin yields (sched_yield): spinning on pause hints instead kept
 * a helper woken on the caller's CPU after an idle pause holding the caller off (a test of
 * 60 layers of 6 x 10 us tasks: 8.3 ms where 2.6 was ideal and 4.2 serial) and was 2-6 %
 * slower in whole MobileNetV2 INT8 inferences here, also when it yielded only where both
 * threads shared a CPU. */
void pool_wake(void *handle) {
    pool *p = handle;
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->active, 1, __ATOMIC_ACQ_REL);
    p->wakes++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void pool_rest(void *handle) {
    pool *p = handle;
    long cur = __atomic_load_n(&p->active, __ATOMIC_ACQUIRE);
    while (cur > 0 && !__atomic_compare_exchange_n(&p->active, &cur, cur - 1, 0, __ATOMIC_ACQ_REL,
                                                   __ATOMIC_ACQUIRE)) {
    }
}

/* Run `n` tasks on the caller and the helpers; returns when all have finished. */
void pool_run(void *handle, const task *tasks, long n) {
    pool *p = handle;
    pthread_mutex_lock(&p->lock);
    long gen = p->generation + 1;
    long tag = (gen & 0x7fffffff) << 32;
    /* retire the previous run's tickets before touching its tasks: a late thread of that
     * run can no longer claim anything (index past every end), then publish this run */
    for (long s = 0; s < p->nshares; s++)
        __atomic_store_n(&p->ticket[s], tag | 0x7fffffffL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&p->tasks, tasks, __ATOMIC_RELEASE);
    __atomic_store_n(&p->ntasks, n, __ATOMIC_RELEASE);
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    for (long s = 0; s < p->nshares; s++)
        __atomic_store_n(&p->ticket[s], tag | (s ? share_end(p, s - 1, n) : 0), __ATOMIC_SEQ_CST);
    __atomic_store_n(&p->generation, gen, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, gen, 0);
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n) sched_yield();
}

/* A run of consecutive layers in one foreign call (parallel.py fuse): step kind 0 shares its
 * n tasks between the threads (pool_run, on `handle`), kind 1 runs them here in order (a
 * layer of one native call, or a whole layer on one thread). No Python between layers. */
typedef struct {
    long kind;
    const task *tasks;
    long n;
} pool_step;

void pool_program(void *handle, const pool_step *steps, long n) {
    for (long i = 0; i < n; i++) {
        const pool_step *s = steps + i;
        if (s->kind == 0)
            pool_run(handle, s->tasks, s->n);
        else
            for (long k = 0; k < s->n; k++) s->tasks[k].fn(s->tasks[k].args);
    }
}

void pool_destroy(void *handle) {
    pool *p = handle;
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->closing, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (long i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p->ticket);
    free(p);
}

/* 1: every thread claims from one shared ticket, first come first served (the pool before
 * per-thread shares; kept for benches comparing the two) */
void pool_set_shared_only(void *handle, long on) {
    pool *p = handle;
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->shared_only, on != 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&p->lock);
}

/* A task that runs tasks in order: a[0] = count, then (function, argument struct) address
 * pairs. One chunk of a layer can so be a whole image's chain (prepare input, convolve)
 * while it is hot in this core's cache. */
void seq_task(const void *args) {
    const long *a = args;
    for (long i = 0; i < a[0]; i++) ((task_fn)a[1 + 2 * i])((const void *)a[2 + 2 * i]);
}
