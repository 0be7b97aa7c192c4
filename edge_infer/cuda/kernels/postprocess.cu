// postprocess.cu - YOLO decode + class-aware NMS on the device, one block per image, making
// the same decisions as edge_infer/pipeline/postprocess.py:decode (kept set, order, boxes).
//
//   ei_postprocess_yolov8   output [B, 4 + C, N]: cx, cy, w, h, then C class scores
//   ei_postprocess_yolov5   output [B, N, 5 + C]: cx, cy, w, h, objectness, C class scores
//
// Design (block per image; why: NMS is sequential per image, and one block keeps every
// intermediate in shared memory or an L2-resident workspace with only __syncthreads):
//   1. every anchor's best class (first maximum, any NaN drops it, as numpy's argmax does;
//      with logits the best raw logit, then one sigmoid, pp_sigmoid), kept when finite and
//      > score_threshold (float32 compare, as numpy does with a python float) and when its
//      box is plausible (pp_plausible: finite, positive, at most 4 frames wide and tall);
//      survivors compacted in anchor order with a warp ballot + block prefix sum;
//   2. bitonic sort by (score desc, anchor asc) == the reference's stable argsort of -score,
//      in shared memory when it fits, else in the workspace; the first max_candidates stay;
//   3. boxes: cxcywh -> xyxy, through the letterbox, clipped (as np.clip does), boxes
//      clipped to nothing dropped, order kept (second compaction);
//   4. the reference's class offset trick replayed in double (span = 2 max|coord| + 1, box +
//      class * span) and IoU computed in double with the same operation order, each op rounded
//      on its own (exact_math.cuh) -> bit-identical IoU-vs-threshold decisions;
//   5. bitmask NMS: one 64-bit word per (box, 64 later boxes), then one warp walks the sorted
//      boxes once, OR-ing the masks of the kept ones, until max_detections are kept; the
//      published score is clipped into [0, 1] (decisions use the raw one).
// Mirrored by edge_infer/cuda/params/postprocess.py (PostprocessParams, workspace layout).
#include "ei_cuda.cuh"
#include "exact_math.cuh"

#define EI_PP_SORT_SHARED 2048    // candidates sorted in shared memory up to this count
#define EI_PP_MAX_CANDIDATES 8192 // NMS width limit: removed-mask words live in shared memory
#define EI_PP_LAYOUT_YOLOV8 0
#define EI_PP_LAYOUT_YOLOV5 1
#define EI_PP_MAX_BOX_FRAMES 4.0f  // postprocess.MAX_BOX_FRAMES: a power of two, exact product

struct PostprocessParams {
    const float* pred;        // [B, 4 + C, N] (yolov8) or [B, N, 5 + C] (yolov5)
    const float* mapping;     // [B, 5] scale, pad_x, pad_y, width, height; null: input pixels
    unsigned char* workspace; // ws_stride bytes per image, layout from the ws_* offsets
    float* boxes;             // [B, max_detections, 4] xyxy
    float* scores;            // [B, max_detections]
    int32_t* classes;         // [B, max_detections]
    int32_t* counts;          // [B] detections kept per image
    int64_t pred_batch_stride;  // elements between images of pred
    int64_t ws_stride;          // bytes per image of workspace
    int64_t ws_sort_score;      // float[sort_len]   byte offsets inside one image's workspace
    int64_t ws_sort_index;      // int32[sort_len]
    int64_t ws_box;             // float[max_candidates * 4]
    int64_t ws_score;           // float[max_candidates]
    int64_t ws_class;           // int32[max_candidates]
    int64_t ws_dbox;            // double[max_candidates * 4]
    int64_t ws_mask;            // uint64[max_candidates * ceil(max_candidates / 64)]
    double iou_threshold;       // double: the reference compares float64 IoUs to a float64
    int32_t num_anchors;        // N
    int32_t num_classes;        // C
    int32_t sort_len;           // power of two >= N
    int32_t max_candidates;     // <= min(N, EI_PP_MAX_CANDIDATES)
    int32_t max_detections;
    float score_threshold;
    int32_t logits;             // 1: class scores (and objectness) are logits, 0: probabilities
};

// postprocess.sigmoid: 1 / (1 + exp(-x)) from IEEE-rounded double ops only (exp(t) = 2^k p(r),
// Cody-Waite reduction, Taylor polynomial of degree 11); no libm exp, whose last bit differs
// between CUDA, glibc and numpy, so the float32 result equals the reference's bit for bit.
// The constants are spelt as Python prints them (round-trip exact).
__device__ __forceinline__ float pp_sigmoid(float x) {
    const double c[12] = {2.505210838544172e-08, 2.755731922398589e-07, 2.7557319223985893e-06,
                          2.48015873015873e-05, 0.0001984126984126984, 0.001388888888888889,
                          0.008333333333333333, 0.041666666666666664, 0.16666666666666666,
                          0.5, 1.0, 1.0};
    double t = -(double)x;
    t = t < -120.0 ? -120.0 : (t > 120.0 ? 120.0 : t);  // the float32 result saturates before
    const double k = floor(ei_dadd(ei_dmul(t, 1.4426950408889634), 0.5));
    const double r = ei_dsub(ei_dsub(t, ei_dmul(k, 0.6931471803691238)),
                             ei_dmul(k, 1.9082149292705877e-10));
    double p = c[0];
#pragma unroll
    for (int i = 1; i < 12; ++i) p = ei_dadd(ei_dmul(p, r), c[i]);
    return (float)ei_ddiv(1.0, ei_dadd(1.0, ldexp(p, (int)k)));
}

// Best class of anchor i; false when the anchor is no candidate (NaN, inf, <= threshold).
template <int LAYOUT>
__device__ __forceinline__ bool pp_best(const float* pred, int n, int c, int i, float thr,
                                        bool logits, float* score, int* cls) {
    float best = 0.0f;
    int arg = 0;
    float obj = 1.0f;
    if (LAYOUT == EI_PP_LAYOUT_YOLOV5) obj = pred[(int64_t)i * (5 + c) + 4];
    for (int k = 0; k < c; ++k) {
        float v = 0.0f;
        if (LAYOUT == EI_PP_LAYOUT_YOLOV8) {
            v = pred[(int64_t)(4 + k) * n + i];
        } else {
            v = pred[(int64_t)i * (5 + c) + 5 + k];
            if (!logits) v = ei_fmul(v, obj);
        }
        if (ei_isnan(v)) return false;  // argmax would pick the NaN: not finite, dropped
        if (k == 0 || v > best) {
            best = v;
            arg = k;
        }
    }
    if (logits) {
        // the best logit is the best probability: one sigmoid per anchor, as the reference
        if (!ei_isfinite(best) || !ei_isfinite(obj)) return false;
        best = pp_sigmoid(best);
        if (LAYOUT == EI_PP_LAYOUT_YOLOV5) best = ei_fmul(best, pp_sigmoid(obj));
    }
    *score = best;
    *cls = arg;
    return ei_isfinite(best) && best > thr;
}

template <int LAYOUT>
__device__ __forceinline__ void pp_cxcywh(const float* pred, int n, int c, int i, float* b) {
    for (int k = 0; k < 4; ++k)
        b[k] = LAYOUT == EI_PP_LAYOUT_YOLOV8 ? pred[(int64_t)k * n + i]
                                             : pred[(int64_t)i * (5 + c) + k];
}

// postprocess._plausible: a box that can be a detection -- finite, positive size and, with a
// letterbox (m: scale, pad_x, pad_y, width, height), at most 4 frame widths / heights.
__device__ __forceinline__ bool pp_plausible(const float* q, const float* m) {
    bool ok = ei_isfinite(q[0]) && ei_isfinite(q[1]) && ei_isfinite(q[2]) &&
              ei_isfinite(q[3]) && q[2] > 0.0f && q[3] > 0.0f;
    if (m) {
        ok = ok && q[2] <= ei_fmul(ei_fmul(m[0], m[3]), EI_PP_MAX_BOX_FRAMES) &&
             q[3] <= ei_fmul(ei_fmul(m[0], m[4]), EI_PP_MAX_BOX_FRAMES);
    }
    return ok;
}

// This thread's slot among the flagged threads of the block (block order), and their count.
// Every thread of the block must call it (it synchronises).
__device__ __forceinline__ int pp_compact(bool flag, int* s_warp, int* count) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    const int rank = ei_popc(ballot & ((1u << lane) - 1u));
    if (lane == 0) s_warp[warp] = ei_popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    const int warps = (int)(blockDim.x >> 5);
    for (int w = 0; w < warps; ++w) {
        const int k = s_warp[w];
        before += (w < (int)warp) ? k : 0;
        total += k;
    }
    __syncthreads();  // s_warp is reused by the next call
    *count = total;
    return before + rank;
}

// (score desc, index asc): the order of numpy's stable argsort of -score
__device__ __forceinline__ bool pp_before(float sa, int ia, float sb, int ib) {
    return sa > sb || (sa == sb && ia < ib);
}

// Bitonic sort of len (a power of two) (score, index) pairs in place, block-wide.
__device__ void pp_sort(float* s, int* idx, int len) {
    for (int k = 2; k <= len; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < len; i += blockDim.x) {
                const int l = i ^ j;
                if (l > i) {
                    const bool up = (i & k) == 0;  // this run sorted first-to-last
                    const float si = s[i], sl = s[l];
                    const int ii = idx[i], il = idx[l];
                    if (pp_before(sl, il, si, ii) == up) {
                        s[i] = sl; s[l] = si;
                        idx[i] = il; idx[l] = ii;
                    }
                }
            }
            __syncthreads();
        }
    }
}

// IoU(a, b) > thr exactly as box_iou + the comparison in postprocess.nms compute it.
__device__ __forceinline__ bool pp_overlaps(const double* a, const double* b, double thr) {
    const double ltx = a[0] > b[0] ? a[0] : b[0], lty = a[1] > b[1] ? a[1] : b[1];
    const double rbx = a[2] < b[2] ? a[2] : b[2], rby = a[3] < b[3] ? a[3] : b[3];
    // disjoint (most pairs, every pair of two classes): rb - lt <= 0 exactly, so the
    // reference's intersection and IoU are 0, never above a threshold in [0, 1]
    if (rbx <= ltx || rby <= lty) return false;
    double iw = ei_dsub(rbx, ltx), ih = ei_dsub(rby, lty);
    iw = iw > 0.0 ? iw : 0.0;
    ih = ih > 0.0 ? ih : 0.0;
    const double inter = ei_dmul(iw, ih);
    double aw = ei_dsub(a[2], a[0]), ah = ei_dsub(a[3], a[1]);
    double bw = ei_dsub(b[2], b[0]), bh = ei_dsub(b[3], b[1]);
    aw = aw > 0.0 ? aw : 0.0; ah = ah > 0.0 ? ah : 0.0;
    bw = bw > 0.0 ? bw : 0.0; bh = bh > 0.0 ? bh : 0.0;
    const double uni = ei_dsub(ei_dadd(ei_dmul(aw, ah), ei_dmul(bw, bh)), inter);
    const double iou = uni > 0.0 ? ei_ddiv(inter, uni) : 0.0;
    return iou > thr;
}

template <int LAYOUT>
__device__ void pp_image(const PostprocessParams& p) {
    __shared__ int s_warp[32];
    __shared__ int s_count;
    __shared__ float s_absmax[32];
    __shared__ float s_sort_score[EI_PP_SORT_SHARED];
    __shared__ int s_sort_index[EI_PP_SORT_SHARED];
    __shared__ unsigned long long s_removed[EI_PP_MAX_CANDIDATES / 64];

    const int img = blockIdx.x, n = p.num_anchors, c = p.num_classes;
    const float* pred = p.pred + img * p.pred_batch_stride;
    unsigned char* ws = p.workspace + img * p.ws_stride;
    float* sort_score = (float*)(ws + p.ws_sort_score);
    int* sort_index = (int*)(ws + p.ws_sort_index);

    const float* m = p.mapping ? p.mapping + img * 5 : nullptr;
    const bool logits = p.logits != 0;

    // 1. candidates (a score and a plausible box), compacted in anchor order
    int total = 0;
    for (int base = 0; base < n; base += blockDim.x) {
        const int i = base + threadIdx.x;
        float score = 0.0f, q[4];
        int cls = 0;
        bool keep = i < n && pp_best<LAYOUT>(pred, n, c, i, p.score_threshold, logits, &score,
                                             &cls);
        if (keep) {
            pp_cxcywh<LAYOUT>(pred, n, c, i, q);
            keep = pp_plausible(q, m);
        }
        int count;
        const int slot = total + pp_compact(keep, s_warp, &count);
        if (keep) {
            sort_score[slot] = score;
            sort_index[slot] = i;
        }
        total += count;
    }
    __syncthreads();  // the last chunk's writes, read by other threads below
    // 2. sort (padding sorts last), keep the best max_candidates
    int len = 1;
    while (len < total) len <<= 1;
    float* ss = sort_score;
    int* si = sort_index;
    if (len <= EI_PP_SORT_SHARED) {
        ss = s_sort_score;
        si = s_sort_index;
    }
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
        if (i < total) {
            const float s = sort_score[i];  // read before the (shared) copy: same thread
            const int x = sort_index[i];
            ss[i] = s;
            si[i] = x;
        } else {
            ss[i] = -3.402823466e38f * 2.0f;  // -inf
            si[i] = 0x7fffffff;
        }
    }
    __syncthreads();
    if (total > 1) pp_sort(ss, si, len);
    const int cand = total < p.max_candidates ? total : p.max_candidates;

    // 3. boxes in frame pixels; valid ones compacted in score order
    float* nbox = (float*)(ws + p.ws_box);
    float* nscore = (float*)(ws + p.ws_score);
    int* nclass = (int*)(ws + p.ws_class);
    int kept = 0;
    float absmax = 0.0f;
    for (int base = 0; base < cand; base += blockDim.x) {
        const int r = base + threadIdx.x;
        bool ok = false;
        float b[4], score = 0.0f;
        int cls = 0;
        if (r < cand) {
            const int i = si[r];
            pp_best<LAYOUT>(pred, n, c, i, p.score_threshold, logits, &score, &cls);
            float q[4];
            pp_cxcywh<LAYOUT>(pred, n, c, i, q);
            const float hw = ei_fdiv(q[2], 2.0f), hh = ei_fdiv(q[3], 2.0f);
            b[0] = ei_fsub(q[0], hw);
            b[1] = ei_fsub(q[1], hh);
            b[2] = ei_fadd(q[0], hw);
            b[3] = ei_fadd(q[1], hh);
            if (m) {
                const float scale = m[0], px = m[1], py = m[2], w = m[3], h = m[4];
                b[0] = ei_clip_nan(ei_fdiv(ei_fsub(b[0], px), scale), 0.0f, w);
                b[2] = ei_clip_nan(ei_fdiv(ei_fsub(b[2], px), scale), 0.0f, w);
                b[1] = ei_clip_nan(ei_fdiv(ei_fsub(b[1], py), scale), 0.0f, h);
                b[3] = ei_clip_nan(ei_fdiv(ei_fsub(b[3], py), scale), 0.0f, h);
            }
            ok = ei_isfinite(b[0]) && ei_isfinite(b[1]) && ei_isfinite(b[2]) &&
                 ei_isfinite(b[3]) && b[2] > b[0] && b[3] > b[1];
        }
        int count;
        const int slot = kept + pp_compact(ok, s_warp, &count);
        if (ok) {
            for (int k = 0; k < 4; ++k) {
                nbox[slot * 4 + k] = b[k];
                absmax = fmaxf(absmax, fabsf(b[k]));
            }
            nscore[slot] = score;
            nclass[slot] = cls;
        }
        kept += count;
    }
    // block max of |coord|: warp shuffle, then across warps
    for (int o = 16; o > 0; o >>= 1)
        absmax = fmaxf(absmax, __shfl_xor_sync(0xffffffffu, absmax, o));
    if ((threadIdx.x & 31u) == 0) s_absmax[threadIdx.x >> 5] = absmax;
    __syncthreads();
    absmax = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) absmax = fmaxf(absmax, s_absmax[w]);

    // 4. class-offset boxes in double, as postprocess.nms shifts them
    const double span = ei_dadd(ei_dmul((double)absmax, 2.0), 1.0);
    double* dbox = (double*)(ws + p.ws_dbox);
    for (int r = threadIdx.x; r < kept; r += blockDim.x) {
        const double off = ei_dmul((double)nclass[r], span);
        for (int k = 0; k < 4; ++k) dbox[r * 4 + k] = ei_dadd((double)nbox[r * 4 + k], off);
    }
    __syncthreads();

    // 5. suppression masks: bit j of mask[r][w] = box 64w + j (later than r) overlaps box r
    const int words = (kept + 63) >> 6;
    unsigned long long* mask = (unsigned long long*)(ws + p.ws_mask);
    for (int t = threadIdx.x; t < kept * words; t += blockDim.x) {
        const int r = t / words, w = t - r * words;
        unsigned long long bits = 0ull;
        const int lo = (w << 6) > r + 1 ? (w << 6) : r + 1;
        const int hi = (w << 6) + 64 < kept ? (w << 6) + 64 : kept;
        for (int j = lo; j < hi; ++j)
            if (pp_overlaps(dbox + r * 4, dbox + j * 4, p.iou_threshold))
                bits |= 1ull << (j - (w << 6));
        mask[t] = bits;
    }
    for (int w = threadIdx.x; w < words; w += blockDim.x) s_removed[w] = 0ull;
    __syncthreads();

    // greedy walk in score order by warp 0 (every lane holds the same `out`)
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        float* obox = p.boxes + (int64_t)img * p.max_detections * 4;
        float* oscore = p.scores + (int64_t)img * p.max_detections;
        int* oclass = p.classes + (int64_t)img * p.max_detections;
        int out = 0;
        for (int r = 0; r < kept && out < p.max_detections; ++r) {
            const bool removed = (s_removed[r >> 6] >> (r & 63)) & 1ull;
            __syncwarp();  // every lane has read the word before any lane ORs into it
            if (removed) continue;
            if (lane < 4) obox[out * 4 + lane] = nbox[r * 4 + lane];
            if (lane == 0) {
                oscore[out] = fminf(fmaxf(nscore[r], 0.0f), 1.0f);  // np.clip(s, 0, 1)
                oclass[out] = nclass[r];
            }
            for (int w = (r >> 6) + lane; w < words; w += 32) s_removed[w] |= mask[r * words + w];
            __syncwarp();
            ++out;
        }
        if (lane == 0) s_count = out;
    }
    __syncthreads();
    if (threadIdx.x == 0) p.counts[img] = s_count;
}

extern "C" __global__ void ei_postprocess_yolov8(const PostprocessParams p) {
    pp_image<EI_PP_LAYOUT_YOLOV8>(p);
}
EI_EXPORT(ei_postprocess_yolov8, PostprocessParams);

extern "C" __global__ void ei_postprocess_yolov5(const PostprocessParams p) {
    pp_image<EI_PP_LAYOUT_YOLOV5>(p);
}
EI_EXPORT(ei_postprocess_yolov5, PostprocessParams);
