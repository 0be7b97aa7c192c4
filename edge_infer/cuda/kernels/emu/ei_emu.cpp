// The emulator's runtime: a team of OS threads (one per CUDA thread of a block, created once
// and reused by every launch), futex barriers, per-warp exchange buffers, launch checks.
//
// Barriers are a mutex-protected count plus a generation word that waiters sleep on with a
// futex: pthread mutexes and acquire/release atomics are what ThreadSanitizer models, so the
// happens-before edges it sees are exactly the ones a __syncthreads creates. A thread that
// returns from the kernel leaves the block's barriers (as an exited thread does on the
// device), so "if (i >= n) return;" before a __syncthreads does not hang.
#include "ei_emu.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace {

const unsigned kMaxThreads = 1024;
// sm_72's opt-in maximum of shared memory per block, the smallest of the targets
const size_t kMaxSharedBytes = 96 * 1024;
const size_t kStackBytes = 8u << 20;

void futex_wait(uint32_t* word, uint32_t value) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}
// waits at most ``seconds`` (a spurious or timed-out return is fine: callers loop)
void futex_wait_for(uint32_t* word, uint32_t value, long seconds) {
    struct timespec limit = {seconds, 0};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, &limit, nullptr, 0);
}
// bumped whenever any barrier opens or a thread finishes a block: the hang watchdog's clock
uint32_t g_progress = 0;
void progress() { __atomic_fetch_add(&g_progress, 1u, __ATOMIC_RELAXED); }
void futex_wake(uint32_t* word, int count) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

struct Barrier {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    int expected = 0;
    int arrived = 0;
    uint32_t generation = 0;  // only grows: late waiters of a past phase never see it reset
    int opened_with = 0;      // how many threads arrived in the last phase

    void reset(int n) {
        pthread_mutex_lock(&mutex);
        expected = n;
        arrived = 0;
        pthread_mutex_unlock(&mutex);
    }
    // with the mutex held: open the barrier for everyone waiting on generation g
    void open_locked(uint32_t g) {
        progress();
        opened_with = arrived;
        arrived = 0;
        __atomic_store_n(&generation, g + 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&mutex);
        futex_wake(&generation, INT_MAX);
    }
    // returns how many threads the phase opened with (read before this thread can arrive
    // again, so no later phase can have overwritten it)
    template <typename F>
    int wait(F&& on_open) {
        pthread_mutex_lock(&mutex);
        uint32_t g = __atomic_load_n(&generation, __ATOMIC_RELAXED);
        if (++arrived >= expected) {
            on_open();
            int n = arrived;
            open_locked(g);
            return n;
        }
        pthread_mutex_unlock(&mutex);
        while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) == g) futex_wait(&generation, g);
        return opened_with;
    }
    int wait() {
        return wait([] {});
    }
    // the calling thread leaves: one fewer to wait for, now and in later phases
    void drop() {
        pthread_mutex_lock(&mutex);
        --expected;
        if (arrived > 0 && arrived >= expected) {
            open_locked(__atomic_load_n(&generation, __ATOMIC_RELAXED));
            return;
        }
        pthread_mutex_unlock(&mutex);
    }
};

struct Warp {
    Barrier barrier;
    unsigned live = 0;  // lanes still running the kernel (atomic access)
    uint64_t slots[32];
    float scratch[3 * 256];
};

struct Launch {
    ei_emu::Thunk thunk;
    const void* params;
    unsigned grid[3], block[3];
    unsigned nthreads;
    uint64_t nblocks;
    unsigned char* dynamic_shared;
    size_t shared_bytes;
    Barrier sync;       // __syncthreads
    Barrier block_end;  // every thread of the block, exited or not
    Warp warps[kMaxThreads / 32];
    int failed;
    char error[512];
    uint32_t done;
};

struct Worker {
    pthread_t thread;
    unsigned tid;
    uint32_t start;  // bumped by the launcher, one futex word per worker
};

struct Trap {};

Launch g_launch;
Worker* g_workers[kMaxThreads];
unsigned g_team = 0;
pthread_mutex_t g_launch_mutex = PTHREAD_MUTEX_INITIALIZER;
// a launch with no progress for this long is reported as hung; its threads stay blocked, so
// the library refuses every later launch
long g_hang_seconds = 120;
bool g_hung = false;

thread_local Warp* t_warp = nullptr;
thread_local unsigned t_lane = 0;
thread_local char t_error[512];

void reset_block_state(Launch& L) {
    L.sync.reset(int(L.nthreads));
    for (unsigned w = 0; w * 32 < L.nthreads; ++w) {
        unsigned lanes = L.nthreads - w * 32 >= 32 ? 32 : L.nthreads - w * 32;
        __atomic_store_n(&L.warps[w].live, lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u,
                         __ATOMIC_RELAXED);
        L.warps[w].barrier.reset(int(lanes));
    }
    // fresh shared memory holds garbage on the device: NaN bytes make a read-before-write show
    if (L.dynamic_shared) memset(L.dynamic_shared, 0xff, L.shared_bytes);
}

void run_blocks(unsigned tid) {
    Launch& L = g_launch;
    // copies: after the last block the launcher may already be writing the next launch
    const ei_emu::Thunk thunk = L.thunk;
    const void* params = L.params;
    const uint64_t nblocks = L.nblocks;
    const unsigned gx = L.grid[0], gy = L.grid[1];
    blockDim = dim3(L.block[0], L.block[1], L.block[2]);
    gridDim = dim3(L.grid[0], L.grid[1], L.grid[2]);
    threadIdx = uint3{tid % L.block[0], (tid / L.block[0]) % L.block[1],
                      tid / (L.block[0] * L.block[1])};
    t_warp = &L.warps[tid / 32];
    t_lane = tid % 32;
    for (uint64_t b = 0; b < nblocks; ++b) {
        blockIdx = uint3{unsigned(b % gx), unsigned((b / gx) % gy), unsigned(b / (uint64_t(gx) * gy))};
        try {
            thunk(params);
        } catch (const Trap&) {
            // the launch is marked failed; this thread leaves the block like an exited one
        }
        progress();
        L.sync.drop();
        __atomic_fetch_and(&t_warp->live, ~(1u << t_lane), __ATOMIC_RELAXED);
        t_warp->barrier.drop();
        const bool last = b + 1 == nblocks;
        L.block_end.wait([&] {
            if (last) {
                __atomic_store_n(&L.done, 1u, __ATOMIC_RELEASE);
                futex_wake(&L.done, 1);
            } else {
                reset_block_state(L);
            }
        });
    }
}

void* worker_main(void* arg) {
    Worker* w = static_cast<Worker*>(arg);
    uint32_t seen = 0;
    for (;;) {
        uint32_t s;
        while ((s = __atomic_load_n(&w->start, __ATOMIC_ACQUIRE)) == seen) futex_wait(&w->start, seen);
        seen = s;
        run_blocks(w->tid);
    }
    return nullptr;
}

void forget_team_in_child() { g_team = 0; }  // a forked child has none of the team's threads

bool grow_team(unsigned n) {
    static bool atfork = (pthread_atfork(nullptr, nullptr, forget_team_in_child), true);
    (void)atfork;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kStackBytes);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bool ok = true;
    while (g_team < n) {
        Worker* w = new Worker();
        w->tid = g_team;
        w->start = 0;
        if (pthread_create(&w->thread, &attr, worker_main, w) != 0) {
            delete w;
            ok = false;
            break;
        }
        g_workers[g_team++] = w;
    }
    pthread_attr_destroy(&attr);
    return ok;
}

int fail(const char* fmt, unsigned long long a = 0, unsigned long long b = 0) {
    snprintf(t_error, sizeof t_error, fmt, a, b);
    return -1;
}

}  // namespace

namespace ei_emu {

int launch(Thunk thunk, const void* params, const unsigned grid[3], const unsigned block[3],
           size_t shared_bytes) {
    uint64_t nthreads = uint64_t(block[0]) * block[1] * block[2];
    uint64_t nblocks = uint64_t(grid[0]) * grid[1] * grid[2];
    t_error[0] = 0;
    if (nthreads == 0 || nthreads > kMaxThreads || block[2] > 64)
        return fail("block of %llu threads (z=%llu): a block has 1 to 1024 threads, z at most 64",
                    nthreads, block[2]);
    if (nblocks == 0 || grid[1] > 65535 || grid[2] > 65535 || grid[0] > 2147483647u)
        return fail("grid of %llu blocks (y*z=%llu): x must be 1..2^31-1, y and z 1..65535",
                    nblocks, uint64_t(grid[1]) * grid[2]);
    if (shared_bytes > kMaxSharedBytes)
        return fail("%llu bytes of dynamic shared memory: at most %llu (sm_72's limit)",
                    shared_bytes, kMaxSharedBytes);
    pthread_mutex_lock(&g_launch_mutex);
    if (g_hung) {
        pthread_mutex_unlock(&g_launch_mutex);
        return fail("an earlier launch hung and its threads are still blocked; this emulator "
                    "library cannot run kernels until the process restarts");
    }
    if (!grow_team(unsigned(nthreads))) {
        pthread_mutex_unlock(&g_launch_mutex);
        return fail("cannot start %llu emulator threads (have %llu)", nthreads, g_team);
    }
    Launch& L = g_launch;
    L.thunk = thunk;
    L.params = params;
    for (int i = 0; i < 3; ++i) {
        L.grid[i] = grid[i];
        L.block[i] = block[i];
    }
    L.nthreads = unsigned(nthreads);
    L.nblocks = nblocks;
    L.shared_bytes = shared_bytes;
    L.dynamic_shared = shared_bytes ? static_cast<unsigned char*>(malloc(shared_bytes)) : nullptr;
    L.failed = 0;
    L.error[0] = 0;
    L.block_end.reset(int(nthreads));
    reset_block_state(L);
    __atomic_store_n(&L.done, 0u, __ATOMIC_RELAXED);
    for (unsigned t = 0; t < nthreads; ++t) {
        __atomic_fetch_add(&g_workers[t]->start, 1u, __ATOMIC_RELEASE);
        futex_wake(&g_workers[t]->start, 1);
    }
    uint32_t seen = __atomic_load_n(&g_progress, __ATOMIC_RELAXED);
    long idle = 0;
    while (!__atomic_load_n(&L.done, __ATOMIC_ACQUIRE)) {
        futex_wait_for(&L.done, 0, 1);
        uint32_t now = __atomic_load_n(&g_progress, __ATOMIC_RELAXED);
        idle = now == seen ? idle + 1 : 0;
        seen = now;
        if (idle >= g_hang_seconds && !__atomic_load_n(&L.done, __ATOMIC_ACQUIRE)) {
            // threads wait at barriers others never reach (a __syncthreads or warp intrinsic
            // in divergent code): report instead of hanging the test run
            g_hung = true;
            pthread_mutex_unlock(&g_launch_mutex);
            return fail("kernel made no progress for %llu s: some threads wait at a barrier "
                        "(__syncthreads or a warp intrinsic) that others never reach",
                        (unsigned long long)g_hang_seconds);
        }
    }
    free(L.dynamic_shared);
    L.dynamic_shared = nullptr;
    int rc = 0;
    if (__atomic_load_n(&L.failed, __ATOMIC_ACQUIRE)) {
        snprintf(t_error, sizeof t_error, "%s", L.error);
        rc = -1;
    }
    pthread_mutex_unlock(&g_launch_mutex);
    return rc;
}

void trap(const char* why) {
    Launch& L = g_launch;
    pthread_mutex_lock(&L.block_end.mutex);  // first trap's message wins
    if (!L.failed) {
        snprintf(L.error, sizeof L.error, "kernel trapped in block (%u,%u,%u) thread (%u,%u,%u): %s",
                 blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, why);
        __atomic_store_n(&L.failed, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&L.block_end.mutex);
    throw Trap();
}

void syncthreads() { g_launch.sync.wait(); }

unsigned lane() { return t_lane; }

unsigned live_lanes() { return __atomic_load_n(&t_warp->live, __ATOMIC_RELAXED); }

unsigned warp_sync(unsigned mask) {
    unsigned live = live_lanes();
    if ((mask & live) != live)
        trap("a warp intrinsic's mask must name every running lane of the warp (partial-warp "
             "masks are outside the subset)");
    return unsigned(t_warp->barrier.wait());
}

uint64_t* warp_slots() { return t_warp->slots; }

float* warp_scratch() { return t_warp->scratch; }

unsigned char* dynamic_shared() { return g_launch.dynamic_shared; }

}  // namespace ei_emu

extern "C" __attribute__((visibility("default"))) const char* ei_emu_last_error(void) {
    return t_error;
}

extern "C" __attribute__((visibility("default"))) int ei_emu_team_size(void) { return int(g_team); }

extern "C" __attribute__((visibility("default"))) void ei_emu_set_hang_seconds(int seconds) {
    g_hang_seconds = seconds > 0 ? seconds : 1;
}
