// The emulator's runtime: barriers, per-warp exchange buffers, launch checks, and two ways of
// running a block's CUDA threads (docs/cuda-kernels.md, "Two schedulers"):
//
// - Fibers (the default): every CUDA thread of a block is a fiber with its own stack on the
//   launching thread, switched only where it waits at a barrier. A barrier then costs two
//   user-space context switches per thread instead of a futex sleep and wake-up, and a
//   deadlock (every unfinished thread waits at a barrier others never reach) is seen at once.
//   The sanitized builds announce each switch to their sanitizer (ThreadSanitizer then sees
//   every fiber as a thread, ordered only by the barriers).
// - OS threads (EI_EMU_THREADS=1): a team of pthreads, one per CUDA thread of a block,
//   created once and reused by every launch.
//
// Barriers are a mutex-protected count plus a generation word that waiters sleep on (a futex,
// or a fiber switch): pthread mutexes and acquire/release atomics are what ThreadSanitizer
// models, so the happens-before edges it sees are exactly the ones a __syncthreads creates. A
// thread that returns from the kernel leaves the block's barriers (as an exited thread does on
// the device), so "if (i >= n) return;" before a __syncthreads does not hang.
#include "ei_emu.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if !defined(__x86_64__) || defined(EI_EMU_UCONTEXT)
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
// ThreadSanitizer's dynamic annotations (exported by its runtime)
extern "C" void AnnotateIgnoreWritesBegin(const char* file, int line);
extern "C" void AnnotateIgnoreWritesEnd(const char* file, int line);
#endif

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

// The running fiber of the launching thread (nullptr in the OS-thread scheduler).
struct Fiber;
thread_local Fiber* t_fiber = nullptr;
// A fiber waiting for ``*word`` to change: back to the scheduler, which resumes it only then.
void fiber_park(uint32_t* word, uint32_t value);

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
        if (!t_fiber) futex_wake(&generation, INT_MAX);
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
        while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) == g) {
            if (t_fiber)
                fiber_park(&generation, g);
            else
                futex_wait(&generation, g);
        }
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

// One CUDA thread's kernel, then it leaves the block's barriers as an exited thread does.
void run_thread(ei_emu::Thunk thunk, const void* params) {
    try {
        thunk(params);
    } catch (const Trap&) {
        // the launch is marked failed; this thread leaves the block like an exited one
    }
    progress();
    g_launch.sync.drop();
    __atomic_fetch_and(&t_warp->live, ~(1u << t_lane), __ATOMIC_RELAXED);
    t_warp->barrier.drop();
}

uint3 thread_index(unsigned tid, const unsigned block[3]) {
    return uint3{tid % block[0], (tid / block[0]) % block[1], tid / (block[0] * block[1])};
}

uint3 block_index(uint64_t b, const unsigned grid[3]) {
    return uint3{unsigned(b % grid[0]), unsigned((b / grid[0]) % grid[1]),
                 unsigned(b / (uint64_t(grid[0]) * grid[1]))};
}

void run_blocks(unsigned tid) {
    Launch& L = g_launch;
    // copies: after the last block the launcher may already be writing the next launch
    const ei_emu::Thunk thunk = L.thunk;
    const void* params = L.params;
    const uint64_t nblocks = L.nblocks;
    const unsigned grid[3] = {L.grid[0], L.grid[1], L.grid[2]};
    blockDim = dim3(L.block[0], L.block[1], L.block[2]);
    gridDim = dim3(L.grid[0], L.grid[1], L.grid[2]);
    threadIdx = thread_index(tid, L.block);
    t_warp = &L.warps[tid / 32];
    t_lane = tid % 32;
    for (uint64_t b = 0; b < nblocks; ++b) {
        blockIdx = block_index(b, grid);
        run_thread(thunk, params);
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

// -- the fiber scheduler ----------------------------------------------------------------------

// A fiber's stack; a PROT_NONE guard page below it turns an overflow into a fault.
const size_t kFiberStackBytes = 1u << 20;

#if defined(__x86_64__) && !defined(EI_EMU_UCONTEXT)
// ei_emu_fiber_switch(&from_sp, to_sp): pushes the callee-saved registers, MXCSR and the x87
// control word, stores the stack pointer in *from_sp, then pops the same from to_sp and
// returns there (System V: every other register is caller-saved across the call).
extern "C" void ei_emu_fiber_switch(void** from_sp, void* to_sp);
asm(R"(
    .text
    .p2align 4
    .type ei_emu_fiber_switch, @function
ei_emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ei_emu_fiber_switch, .-ei_emu_fiber_switch
)");

struct Context {
    void* sp = nullptr;
};

void context_switch(Context& from, Context& to) { ei_emu_fiber_switch(&from.sp, to.sp); }

// A context that starts ``entry`` (which never returns) on the stack below ``top``: the frame
// ei_emu_fiber_switch pops, whose return address is ``entry`` with rsp then = 8 mod 16, as
// after a call.
void context_init(Context& c, char* top, void (*entry)()) {
    uint64_t* sp = reinterpret_cast<uint64_t*>(uintptr_t(top) & ~uintptr_t(15));
    *--sp = 0;                             // entry's return address: none
    *--sp = uint64_t(uintptr_t(entry));    // ei_emu_fiber_switch returns here
    for (int i = 0; i < 6; ++i) *--sp = 0;  // rbp rbx r12 r13 r14 r15
    uint32_t csr[2] = {0, 0};
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(csr[1]));
    *--sp = uint64_t(csr[0]) | (uint64_t(csr[1]) << 32);
    c.sp = sp;
}
#else
// elsewhere, ucontext: correct, slower (swapcontext saves the signal mask with a system call)
struct Context {
    ucontext_t uc;
};

void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }

void context_init(Context& c, char* top, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = top - kFiberStackBytes;
    c.uc.uc_stack.ss_size = kFiberStackBytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
    Context ctx;
    char* top = nullptr;  // of its stack
    uint3 tid3;
    Warp* warp = nullptr;
    unsigned lane = 0;
    // written by the fiber, read by the scheduler: relaxed atomics (ThreadSanitizer sees the
    // two as different threads with no order between them)
    uint32_t* wait_word = nullptr;  // parked until *wait_word != wait_value
    uint32_t wait_value = 0;
    bool done = false;
    bool started = false;        // in this block (scheduler only)
    void* fake_stack = nullptr;  // AddressSanitizer's, while the fiber is switched out
    void* tsan = nullptr;        // ThreadSanitizer's context of the fiber
};

Fiber* g_fibers[kMaxThreads];
unsigned g_fiber_count = 0;
// the launching thread's context while a fiber runs (launches are serialized)
Context g_scheduler;

// AddressSanitizer must know which stack runs (a C++ throw unpoisons the frames it unwinds
// between the stack pointer and the running stack's top): every switch is announced through
// its fiber interface. The launching thread's stack bounds are learnt at a fiber's first
// resumption.
//
// ThreadSanitizer sees each fiber as a thread of its own. A fiber's first switch-in of a block
// synchronizes (the launch and the block before happen before its threads); every other
// switch does not, so the only order between the threads of a block is what the barriers'
// mutexes and atomics make, as with OS threads, and a missing __syncthreads is still a race
// it reports. The scheduler's writes of the thread-local indices a fiber reads are hidden
// from it (they stand for per-thread registers).
#if defined(__SANITIZE_ADDRESS__)
const void* g_thread_stack = nullptr;
size_t g_thread_stack_size = 0;
void* g_scheduler_fake_stack = nullptr;
#endif
#if defined(__SANITIZE_THREAD__)
void* g_scheduler_tsan = nullptr;
#endif

// the scheduler runs fiber f, as CUDA thread f, until it parks or finishes
void enter_fiber(Fiber* f) {
#if defined(__SANITIZE_THREAD__)
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
    threadIdx = f->tid3;
    t_warp = f->warp;
    t_lane = f->lane;
    t_fiber = f;
    const bool first = !f->started;
    f->started = true;
#if defined(__SANITIZE_THREAD__)
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    // the last thing the scheduler does before the switch: from here on TSan counts the
    // calling thread's accesses as the fiber's
    __tsan_switch_to_fiber(f->tsan, first ? 0 : __tsan_switch_to_fiber_no_sync);
#else
    (void)first;
#endif
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&g_scheduler_fake_stack, f->top - kFiberStackBytes,
                                   kFiberStackBytes);
#endif
    context_switch(g_scheduler, f->ctx);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(g_scheduler_fake_stack, nullptr, nullptr);
#endif
}

// in fiber f, just after the scheduler switched to it
void fiber_resumed(Fiber* f) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(f->fake_stack, &g_thread_stack, &g_thread_stack_size);
#else
    (void)f;
#endif
}

// fiber f back to the scheduler; a finished fiber is never resumed
void leave_fiber(Fiber* f, bool finished) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(finished ? nullptr : &f->fake_stack, g_thread_stack,
                                   g_thread_stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
    // never synchronizing: the block's end is ordered by the barriers' mutexes, which every
    // finished thread released (run_thread) and the scheduler acquires (block_finished)
    __tsan_switch_to_fiber(__atomic_load_n(&g_scheduler_tsan, __ATOMIC_RELAXED),
                           __tsan_switch_to_fiber_no_sync);
#else
    (void)finished;
#endif
    context_switch(f->ctx, g_scheduler);
    fiber_resumed(f);
}

void fiber_park(uint32_t* word, uint32_t value) {
    Fiber* f = t_fiber;
    __atomic_store_n(&f->wait_word, word, __ATOMIC_RELAXED);
    __atomic_store_n(&f->wait_value, value, __ATOMIC_RELAXED);
    leave_fiber(f, false);
}

[[noreturn]] void fiber_main() {
    Fiber* f = t_fiber;
    fiber_resumed(f);
    run_thread(g_launch.thunk, g_launch.params);
    __atomic_store_n(&f->done, true, __ATOMIC_RELAXED);
    leave_fiber(f, true);
    __builtin_trap();  // a finished fiber is never resumed
}

bool grow_fibers(unsigned n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    while (g_fiber_count < n) {
        void* mem = mmap(nullptr, kFiberStackBytes + page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (mem == MAP_FAILED) return false;
        mprotect(mem, page, PROT_NONE);
        Fiber* f = new Fiber();
        f->top = static_cast<char*>(mem) + page + kFiberStackBytes;
#if defined(__SANITIZE_THREAD__)
        f->tsan = __tsan_create_fiber(0);
#endif
        g_fibers[g_fiber_count++] = f;
    }
    return true;
}

// Every block of the launch, one after another, each thread a fiber run until it waits at a
// barrier, in thread order, round after round. False when a round finds every unfinished
// thread parked: they wait at barriers others never reach (their stacks are abandoned; the
// next block starts every fiber afresh).
// The scheduler after a block: every finished thread released the block barrier's mutex
// (run_thread drops it), so taking it orders the whole block before what follows.
void block_finished(Launch& L) {
    pthread_mutex_lock(&L.sync.mutex);
    pthread_mutex_unlock(&L.sync.mutex);
}

bool run_fiber_blocks(Launch& L) {
#if defined(__SANITIZE_THREAD__)
    // atomic: a finished fiber of the last launch read it after its last ordered access
    __atomic_store_n(&g_scheduler_tsan, __tsan_get_current_fiber(), __ATOMIC_RELAXED);
#endif
    blockDim = dim3(L.block[0], L.block[1], L.block[2]);
    gridDim = dim3(L.grid[0], L.grid[1], L.grid[2]);
    for (unsigned t = 0; t < L.nthreads; ++t) {
        Fiber* f = g_fibers[t];
        f->tid3 = thread_index(t, L.block);
        f->warp = &L.warps[t / 32];
        f->lane = t % 32;
    }
    bool ok = true;
    for (uint64_t b = 0; b < L.nblocks && ok; ++b) {
        blockIdx = block_index(b, L.grid);
        if (b > 0) reset_block_state(L);
        for (unsigned t = 0; t < L.nthreads; ++t) {
            Fiber* f = g_fibers[t];
            __atomic_store_n(&f->done, false, __ATOMIC_RELAXED);
            __atomic_store_n(&f->wait_word, nullptr, __ATOMIC_RELAXED);
            f->started = false;
            context_init(f->ctx, f->top, fiber_main);
        }
        unsigned running = L.nthreads;
        while (running > 0) {
            bool resumed = false;
            for (unsigned t = 0; t < L.nthreads; ++t) {
                Fiber* f = g_fibers[t];
                if (__atomic_load_n(&f->done, __ATOMIC_RELAXED)) continue;
                // relaxed: the resumed fiber's own acquire load (Barrier::wait) is the order
                const uint32_t* word = __atomic_load_n(&f->wait_word, __ATOMIC_RELAXED);
                if (word && __atomic_load_n(word, __ATOMIC_RELAXED) ==
                                __atomic_load_n(&f->wait_value, __ATOMIC_RELAXED))
                    continue;
                __atomic_store_n(&f->wait_word, nullptr, __ATOMIC_RELAXED);
                enter_fiber(f);
                resumed = true;
                if (__atomic_load_n(&f->done, __ATOMIC_RELAXED)) --running;
            }
            if (!resumed) {
                ok = false;
#if defined(__SANITIZE_ADDRESS__)
                // the parked fibers' frames are abandoned with their redzones poisoned
                for (unsigned t = 0; t < L.nthreads; ++t)
                    __asan_unpoison_memory_region(g_fibers[t]->top - kFiberStackBytes,
                                                  kFiberStackBytes);
#endif
#if defined(__SANITIZE_THREAD__)
                // the parked fibers never release their last accesses: a synchronizing
                // switch there and back (no stack changes) orders them before what follows
                for (unsigned t = 0; t < L.nthreads; ++t) {
                    __tsan_switch_to_fiber(g_fibers[t]->tsan, 0);
                    __tsan_switch_to_fiber(g_scheduler_tsan, 0);
                }
#endif
                break;
            }
        }
        block_finished(L);
    }
#if defined(__SANITIZE_THREAD__)
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
    t_fiber = nullptr;
    t_warp = nullptr;
#if defined(__SANITIZE_THREAD__)
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
#endif
    return ok;
}

// fibers unless EI_EMU_THREADS=1 asks for OS threads
bool use_fibers() {
    static const bool fibers = [] {
        const char* env = getenv("EI_EMU_THREADS");
        return !(env && env[0] == '1');
    }();
    return fibers;
}

int fail(const char* fmt, unsigned long long a = 0, unsigned long long b = 0) {
    snprintf(t_error, sizeof t_error, fmt, a, b);
    return -1;
}

// after the last block: the launch's result, and the next launch may start
int finish_launch(Launch& L) {
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
    const bool fibers = use_fibers();
    if (fibers ? !grow_fibers(unsigned(nthreads)) : !grow_team(unsigned(nthreads))) {
        pthread_mutex_unlock(&g_launch_mutex);
        return fail(fibers ? "cannot map the stacks of %llu emulator fibers (have %llu)"
                           : "cannot start %llu emulator threads (have %llu)",
                    nthreads, fibers ? g_fiber_count : g_team);
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
    if (fibers) {
        if (!run_fiber_blocks(L)) {
            // the kernel's trap message, if any, is not the point: it cannot finish
            L.failed = 1;
            snprintf(L.error, sizeof L.error, "%s",
                     "kernel deadlocked: every unfinished thread waits at a barrier "
                     "(__syncthreads or a warp intrinsic) that others never reach");
        }
        return finish_launch(L);
    }
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
    return finish_launch(L);
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

extern "C" __attribute__((visibility("default"))) const char* ei_emu_scheduler(void) {
    return use_fibers() ? "fibers" : "threads";
}
