/* A tiny thread pool for native layer chunks: the caller and `workers - 1` threads claim
 * tasks from one array; helpers spin briefly between layers (a layer's chunks follow each
 * other within microseconds) and then sleep on a condition variable. One pool_run at a
 * time per pool; the caller runs tasks too, so a descheduled helper never blocks a layer.
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
    long ticket;    /* (run number << 32) | next task to claim; claimed by CAS (atomic) */
    long done;      /* tasks finished in this run (atomic) */
    long generation;/* run number (atomic) */
    int closing;
} pool;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Claim and run tasks of run `gen` until none is left. A thread that arrives late (its run
 * is over, another may have started) fails the run-number check and claims nothing. */
static void drain(pool *p, long gen) {
    for (;;) {
        long cur = __atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE);
        if ((cur >> 32) != (gen & 0x7fffffff)) return;
        long k = cur & 0xffffffffL;
        if (k >= __atomic_load_n(&p->ntasks, __ATOMIC_ACQUIRE)) return;
        if (!__atomic_compare_exchange_n(&p->ticket, &cur, cur + 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        const task *t = __atomic_load_n(&p->tasks, __ATOMIC_ACQUIRE) + k;
        t->fn(t->args);
        __atomic_fetch_add(&p->done, 1, __ATOMIC_ACQ_REL);
    }
}

static void *helper(void *arg) {
    pool *p = arg;
    long seen = 0;
    for (;;) {
        long deadline = now_ns() + p->spin_ns;
        long gen;
        while ((gen = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE)) == seen
               && !__atomic_load_n(&p->closing, __ATOMIC_ACQUIRE) && now_ns() < deadline)
            sched_yield();
        if (gen == seen) {
            pthread_mutex_lock(&p->lock);
            while ((gen = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE)) == seen
                   && !p->closing)
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (__atomic_load_n(&p->closing, __ATOMIC_ACQUIRE)) return NULL;
        seen = gen;
        drain(p, gen);
    }
}

void *pool_create(long workers, long spin_us) {
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->spin_ns = spin_us * 1000;
    p->nthreads = workers > 1 ? workers - 1 : 0;
    p->threads = calloc((size_t)(p->nthreads ? p->nthreads : 1), sizeof(pthread_t));
    for (long i = 0; i < p->nthreads; i++)
        if (pthread_create(&p->threads[i], NULL, helper, p) != 0) { p->nthreads = i; break; }
    return p;
}

/* Run `n` tasks on the caller and the helpers; returns when all have finished. */
void pool_run(void *handle, const task *tasks, long n) {
    pool *p = handle;
    pthread_mutex_lock(&p->lock);
    long gen = p->generation + 1;
    /* retire the previous run's ticket before touching its tasks: a late thread of that
     * run can no longer claim anything (index past the end), then publish this run */
    __atomic_store_n(&p->ticket, ((gen & 0x7fffffff) << 32) | 0x7fffffffL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&p->tasks, tasks, __ATOMIC_RELEASE);
    __atomic_store_n(&p->ntasks, n, __ATOMIC_RELEASE);
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&p->ticket, (gen & 0x7fffffff) << 32, __ATOMIC_SEQ_CST);
    __atomic_store_n(&p->generation, gen, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, gen);
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n) sched_yield();
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
    free(p);
}

/* A task that runs tasks in order: a[0] = count, then (function, argument struct) address
 * pairs. One chunk of a layer can so be a whole image's chain (prepare input, convolve)
 * while it is hot in this core's cache. */
void seq_task(const void *args) {
    const long *a = args;
    for (long i = 0; i < a[0]; i++) ((task_fn)a[1 + 2 * i])((const void *)a[2 + 2 * i]);
}
