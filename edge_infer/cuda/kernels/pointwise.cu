// The IR's Pointwise chains (edge_infer/engine/ops/fused.py): a short program of elementwise
// steps run per element on the running value, interpreted (one entry point for every chain the
// fusion pass can make; the steps are uniform across the grid, so the switch costs no
// divergence and the kernel stays memory-bound). Inputs broadcast to the output by element
// strides (0 on a broadcast axis); each is fp32 or fp16 (bit k of in_half), as is the output;
// the arithmetic is float, as the reference's float16 layers compute in float32.
#include "ei_cuda.cuh"

#define EI_PW_MAX_INPUTS 4
#define EI_PW_MAX_STEPS 8
#define EI_PW_MAX_RANK 6

// operand sources: an input index >= 0, or
#define EI_PW_ACC (-1)
#define EI_PW_NONE (-2)

enum EiPwOp {
    EI_PW_RELU = 0, EI_PW_LEAKY_RELU, EI_PW_SIGMOID, EI_PW_TANH, EI_PW_HARD_SIGMOID,
    EI_PW_HARD_SWISH, EI_PW_ELU, EI_PW_SELU, EI_PW_CELU, EI_PW_SOFTPLUS, EI_PW_SOFTSIGN,
    EI_PW_MISH, EI_PW_GELU, EI_PW_GELU_TANH, EI_PW_THRESHOLDED_RELU, EI_PW_EXP, EI_PW_LOG,
    EI_PW_SQRT, EI_PW_RECIPROCAL, EI_PW_NEG, EI_PW_ABS, EI_PW_FLOOR, EI_PW_CEIL, EI_PW_ROUND,
    EI_PW_ERF, EI_PW_SIN, EI_PW_COS, EI_PW_CLIP,
    EI_PW_ADD, EI_PW_SUB, EI_PW_MUL, EI_PW_DIV, EI_PW_POW, EI_PW_MAX, EI_PW_MIN, EI_PW_PRELU,
    EI_PW_OP_COUNT
};

struct PwStep {
    int32_t op;     // EiPwOp
    int32_t a;      // operand sources (EI_PW_ACC, EI_PW_NONE or an input index)
    int32_t b;
    int32_t c;
    float f0;       // attributes (alpha, beta, gamma; Clip's min/max when they are attributes)
    float f1;
};

struct PointwiseParams {
    const void* in[EI_PW_MAX_INPUTS];
    void* out;
    int32_t shape[EI_PW_MAX_RANK];                       // the output's, padded with leading 1s
    int32_t strides[EI_PW_MAX_INPUTS][EI_PW_MAX_RANK];   // per input, in elements, 0: broadcast
    int32_t count;
    int32_t num_inputs;
    int32_t num_steps;
    int32_t in_half;   // bit k: input k is fp16
    int32_t out_half;
    PwStep steps[EI_PW_MAX_STEPS];
};

__device__ __forceinline__ float ei_pw_unary(int op, float x, float f0, float f1) {
    switch (op) {
        case EI_PW_RELU: return fmaxf(x, 0.0f);
        case EI_PW_LEAKY_RELU: return x >= 0.0f ? x : x * f0;
        case EI_PW_SIGMOID: return ei_sigmoid(x);
        case EI_PW_TANH: return tanhf(x);
        case EI_PW_HARD_SIGMOID: return fminf(fmaxf(x * f0 + f1, 0.0f), 1.0f);
        case EI_PW_HARD_SWISH: return x * fminf(fmaxf(x * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
        case EI_PW_ELU: return x > 0.0f ? x : f0 * expm1f(x);
        case EI_PW_SELU: return f1 * (x > 0.0f ? x : f0 * expm1f(x));
        case EI_PW_CELU: return fmaxf(x, 0.0f) + fminf(0.0f, f0 * expm1f(fminf(x, 0.0f) / f0));
        case EI_PW_SOFTPLUS: return ei_softplus(x);
        case EI_PW_SOFTSIGN: return x / (1.0f + fabsf(x));
        case EI_PW_MISH: return x * tanhf(ei_softplus(x));
        case EI_PW_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case EI_PW_GELU_TANH:
            return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case EI_PW_THRESHOLDED_RELU: return x > f0 ? x : 0.0f;
        case EI_PW_EXP: return expf(x);
        case EI_PW_LOG: return logf(x);
        case EI_PW_SQRT: return sqrtf(x);
        case EI_PW_RECIPROCAL: return 1.0f / x;
        case EI_PW_NEG: return -x;
        case EI_PW_ABS: return fabsf(x);
        case EI_PW_FLOOR: return floorf(x);
        case EI_PW_CEIL: return ceilf(x);
        case EI_PW_ROUND: return rintf(x);  // ONNX Round: half to even
        case EI_PW_ERF: return erff(x);
        case EI_PW_SIN: return sinf(x);
        case EI_PW_COS: return cosf(x);
        default: return x;
    }
}

__device__ __forceinline__ float ei_pw_binary(int op, float a, float b) {
    switch (op) {
        case EI_PW_ADD: return a + b;
        case EI_PW_SUB: return a - b;
        case EI_PW_MUL: return a * b;
        case EI_PW_DIV: return a / b;
        case EI_PW_POW: return powf(a, b);
        case EI_PW_MAX: return (a != a || b != b) ? a + b : fmaxf(a, b);  // NaN propagates
        case EI_PW_MIN: return (a != a || b != b) ? a + b : fminf(a, b);
        case EI_PW_PRELU: return a < 0.0f ? a * b : a;
        default: return a;
    }
}

// operand ``src`` of a step: the running value or one of the (register-held) inputs; a
// select chain rather than v[src], which would put v in local memory
__device__ __forceinline__ float ei_pw_operand(int32_t src, float acc, const float (&v)[4],
                                               float none) {
    return src == EI_PW_ACC    ? acc
           : src == EI_PW_NONE ? none
           : src == 1          ? v[1]
           : src == 2          ? v[2]
           : src == 3          ? v[3]
                               : v[0];
}

extern "C" __global__ void ei_pointwise(const PointwiseParams p) {
    const int32_t step = int32_t(gridDim.x * blockDim.x);
    for (int32_t i = int32_t(blockIdx.x * blockDim.x + threadIdx.x); i < p.count; i += step) {
        int32_t coord[EI_PW_MAX_RANK];
        int32_t r = i;
#pragma unroll
        for (int d = EI_PW_MAX_RANK - 1; d >= 0; --d) {
            coord[d] = r % p.shape[d];
            r /= p.shape[d];
        }
        float v[EI_PW_MAX_INPUTS] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < EI_PW_MAX_INPUTS; ++k) {
            if (k < p.num_inputs) {
                int64_t at = 0;
#pragma unroll
                for (int d = 0; d < EI_PW_MAX_RANK; ++d)
                    at += int64_t(coord[d]) * p.strides[k][d];
                v[k] = (p.in_half >> k) & 1
                           ? __half2float(static_cast<const __half*>(p.in[k])[at])
                           : static_cast<const float*>(p.in[k])[at];
            }
        }
        float acc = v[0];
        for (int s = 0; s < EI_PW_MAX_STEPS; ++s) {
            if (s >= p.num_steps) break;
            const PwStep& st = p.steps[s];
            const float a = ei_pw_operand(st.a, acc, v, acc);
            if (st.op == EI_PW_CLIP) {  // bounds: operands b/c, else the attributes f0/f1
                acc = fminf(fmaxf(a, ei_pw_operand(st.b, acc, v, st.f0)),
                            ei_pw_operand(st.c, acc, v, st.f1));
            } else if (st.op < EI_PW_ADD) {
                acc = ei_pw_unary(st.op, a, st.f0, st.f1);
            } else {
                acc = ei_pw_binary(st.op, a, ei_pw_operand(st.b, acc, v, acc));
            }
        }
        if (p.out_half)
            static_cast<__half*>(p.out)[i] = __float2half_rn(acc);
        else
            static_cast<float*>(p.out)[i] = acc;
    }
}
EI_EXPORT(ei_pointwise, PointwiseParams);
