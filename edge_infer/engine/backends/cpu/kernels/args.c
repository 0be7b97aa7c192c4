/* The layout of every kernel's argument struct and the activation codes, as this compiler
 * lays them out, for native.py to compare with its ctypes mirrors when it loads the library
 * (see args.h). */
#include <stddef.h>

#include "args.h"

#define EI_ROW(kernel, type, name)                                                             \
    {#kernel, #name, (long)offsetof(kernel##_args, name),                                      \
     (long)sizeof(((kernel##_args *)0)->name)},
#define EI_ROWS(kernel, FIELDS)                                                                \
    {#kernel, "", 0, (long)sizeof(kernel##_args)}, FIELDS(EI_ROW, kernel)

static const ei_field_layout LAYOUTS[] = {EI_KERNELS(EI_ROWS){NULL, NULL, 0, 0}};

const ei_field_layout *ei_arg_layouts(void) { return LAYOUTS; }

#define EI_ACT_ROW(name, value, attr) {attr, value},

static const ei_activation_code ACTIVATIONS[] = {EI_ACTIVATIONS(EI_ACT_ROW){NULL, 0}};

const ei_activation_code *ei_activation_codes(void) { return ACTIVATIONS; }
