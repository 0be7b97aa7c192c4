// The fused epilogue's activations, shared by every kernel that applies one. The codes are
// mirrored by edge_infer/cuda/activations.py (EiAct), which maps the IR's activation names
// (edge_infer/engine/ops/fused.py: ACTIVATIONS) and their params to (code, p0, p1).
// Each form follows the engine's float reference (edge_infer/engine/ops/activations.py).
#ifndef EI_EPILOGUE_CUH_
#define EI_EPILOGUE_CUH_

enum EiAct {
    EI_ACT_NONE = 0,
    EI_ACT_RELU = 1,
    EI_ACT_LEAKY_RELU = 2,    // p0 = alpha
    EI_ACT_CLIP = 3,          // p0 = min, p1 = max
    EI_ACT_SIGMOID = 4,
    EI_ACT_SILU = 5,
    EI_ACT_HARD_SWISH = 6,
    EI_ACT_HARD_SIGMOID = 7,  // p0 = alpha, p1 = beta
    EI_ACT_MISH = 8,
    EI_ACT_GELU = 9,          // exact (erf)
    EI_ACT_GELU_TANH = 10,    // approximate="tanh"
    EI_ACT_TANH = 11,
    EI_ACT_ELU = 12,          // p0 = alpha
    EI_ACT_COUNT = 13
};

// 1 / (1 + e^-x) without overflow: e^-|x| never exceeds 1
__device__ __forceinline__ float ei_sigmoid(float x) {
    float e = expf(-fabsf(x));
    float r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : e * r;
}

// log(1 + e^x) without overflow
__device__ __forceinline__ float ei_softplus(float x) {
    return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}

__device__ __forceinline__ float ei_activate(float x, int act, float p0, float p1) {
    switch (act) {
        case EI_ACT_RELU:
            return fmaxf(x, 0.0f);
        case EI_ACT_LEAKY_RELU:
            return x >= 0.0f ? x : x * p0;
        case EI_ACT_CLIP:
            return fminf(fmaxf(x, p0), p1);
        case EI_ACT_SIGMOID:
            return ei_sigmoid(x);
        case EI_ACT_SILU:
            return x * ei_sigmoid(x);
        case EI_ACT_HARD_SWISH:
            return x * fminf(fmaxf(x * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
        case EI_ACT_HARD_SIGMOID:
            return fminf(fmaxf(x * p0 + p1, 0.0f), 1.0f);
        case EI_ACT_MISH:
            return x * tanhf(ei_softplus(x));
        case EI_ACT_GELU:
            return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case EI_ACT_GELU_TANH:
            return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case EI_ACT_TANH:
            return tanhf(x);
        case EI_ACT_ELU:
            return x > 0.0f ? x : p0 * expm1f(x);
        default:
            return x;
    }
}

#endif  // EI_EPILOGUE_CUH_
