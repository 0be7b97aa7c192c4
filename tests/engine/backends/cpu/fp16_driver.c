/* Runs kernels/convert_f16.c on files (the aarch64 check of test_fp16_native.py, under
 * qemu-user): convert_driver MODE N IN OUT reads N values (float16 for mode 0, float32
 * otherwise) from IN, converts them with convert_half_f32 and writes the result to OUT;
 * prints the vector width the file was compiled with. */
#include <stdio.h>
#include <stdlib.h>

#include "args.h"

long convert_half_lanes(void);

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    long mode = atol(argv[1]), n = atol(argv[2]);
    size_t in_size = mode == 0 ? 2 : 4, out_size = mode == 1 ? 2 : 4;
    void *x = malloc((size_t)n * in_size), *y = malloc((size_t)n * out_size);
    FILE *f = fopen(argv[3], "rb");
    if (!f || fread(x, in_size, (size_t)n, f) != (size_t)n) return 3;
    fclose(f);
    convert_half_args a = {x, y, 1, n, n, n, mode};
    convert_half_f32(&a);
    f = fopen(argv[4], "wb");
    if (!f || fwrite(y, out_size, (size_t)n, f) != (size_t)n) return 4;
    fclose(f);
    printf("%ld\n", convert_half_lanes());
    return 0;
}
