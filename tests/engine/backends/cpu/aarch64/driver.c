/* Replays recorded native kernel calls, for running the kernels on another architecture
 * (aarch64 under qemu-user) against the host's reference: test_aarch64_kernels.py records,
 * on the host, the calls the CPU tactics make (each kernel's argument struct, args.h) and
 * the memory they point into; this driver rebuilds that memory, points each struct's
 * pointer fields into it, runs the calls in order through the native pool (pool.c: the
 * kernels' _task wrappers under seq_task, two workers) and writes the memory back.
 *
 *   driver replay IN OUT   IN: "EIRPLAY1", u64 regions, u64 calls, then each region
 *                          (u64 bytes, data), then each call (u64 name length, name,
 *                          u64 struct bytes, struct, u64 relocations, then per relocation
 *                          u64 field offset, u64 region, u64 offset in region);
 *                          OUT: each region again (u64 bytes, data)
 *   driver layouts         the argument structs' layouts and activation codes, one per line
 *   driver work COUT TB    winograd_work_f32(COUT, TB)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

typedef void (*task_fn)(const void *args);
typedef struct {
    task_fn fn;
    const void *args;
} task;

void *pool_create(long workers, long spin_us);
void pool_run(void *handle, const task *tasks, long n);
void pool_destroy(void *handle);
void seq_task(const void *args);
long winograd_work_f32(long cout, long tb);

#define EI_TASK_ROW(kernel, FIELDS) {#kernel "_f32", kernel##_task},
static const struct {
    const char *name;
    task_fn fn;
} TASKS[] = {EI_KERNELS(EI_TASK_ROW){NULL, NULL}};

static void die(const char *what) {
    fprintf(stderr, "driver: %s\n", what);
    exit(2);
}

static uint64_t u64(FILE *f) {
    uint64_t v;
    if (fread(&v, sizeof v, 1, f) != 1) die("truncated input");
    return v;
}

static void *bytes(FILE *f, uint64_t n) {
    /* 64-byte aligned with slack, as numpy's buffers are at least 16-byte aligned */
    void *p = aligned_alloc(64, (n + 127) / 64 * 64);
    if (!p) die("out of memory");
    if (n && fread(p, 1, n, f) != n) die("truncated input");
    return p;
}

static int replay(const char *in_path, const char *out_path) {
    FILE *f = fopen(in_path, "rb");
    if (!f) die("cannot open input");
    char magic[8];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "EIRPLAY1", 8)) die("not a replay file");
    uint64_t nregions = u64(f), ncalls = u64(f);
    char **region = calloc(nregions, sizeof *region);
    uint64_t *size = calloc(nregions, sizeof *size);
    for (uint64_t r = 0; r < nregions; r++) {
        size[r] = u64(f);
        region[r] = bytes(f, size[r]);
    }
    /* seq_task's slots: count, then (task function, argument struct) pairs */
    long *seq = calloc(1 + 2 * ncalls, sizeof *seq);
    seq[0] = (long)ncalls;
    for (uint64_t c = 0; c < ncalls; c++) {
        uint64_t len = u64(f);
        char name[64] = {0};
        if (len >= sizeof name || fread(name, 1, len, f) != len) die("bad kernel name");
        task_fn fn = NULL;
        for (long k = 0; TASKS[k].name; k++)
            if (!strcmp(TASKS[k].name, name)) fn = TASKS[k].fn;
        if (!fn) die("unknown kernel");
        char *args = bytes(f, u64(f));
        uint64_t nrel = u64(f);
        for (uint64_t k = 0; k < nrel; k++) {
            uint64_t field = u64(f), r = u64(f), off = u64(f);
            if (r >= nregions || off > size[r]) die("relocation outside its region");
            char *p = region[r] + off;
            memcpy(args + field, &p, sizeof p);
        }
        seq[1 + 2 * c] = (long)fn;
        seq[2 + 2 * c] = (long)args;
    }
    fclose(f);
    void *pool = pool_create(2, 50);
    task all = {seq_task, seq};
    pool_run(pool, &all, 1);
    pool_destroy(pool);
    FILE *o = fopen(out_path, "wb");
    if (!o) die("cannot write output");
    for (uint64_t r = 0; r < nregions; r++) {
        fwrite(&size[r], sizeof size[r], 1, o);
        fwrite(region[r], 1, size[r], o);
    }
    return fclose(o) != 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "replay")) return replay(argv[2], argv[3]);
    if (argc == 2 && !strcmp(argv[1], "layouts")) {
        for (const ei_field_layout *l = ei_arg_layouts(); l->kernel; l++)
            printf("field %s %s %ld %ld\n", l->kernel, l->field[0] ? l->field : "-", l->offset,
                   l->size);
        for (const ei_activation_code *a = ei_activation_codes(); a->attr; a++)
            printf("activation %s %ld\n", a->attr[0] ? a->attr : "-", a->code);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "work")) {
        printf("%ld\n", winograd_work_f32(atol(argv[2]), atol(argv[3])));
        return 0;
    }
    die("usage: driver replay IN OUT | layouts | work COUT TB");
    return 2;
}
