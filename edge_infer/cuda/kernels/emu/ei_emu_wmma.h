// nvcuda::wmma for the emulator: 16x16x16 fragments of half (float or half accumulator) and
// signed char (int accumulator).
//
// A fragment holds its lane's elements in x[]. CUDA leaves the element-to-lane mapping
// unspecified, so kernels may only apply the same operation to every element; here element i
// of lane l is matrix entry m = (i*32 + l) % 256 (row m/16, column m%16), the A/B fragments'
// 16 elements per lane holding every entry twice. Loads and stores are per lane (each lane
// touches only its own entries, so a missing __syncwarp around them is a race TSan sees);
// mma_sync gathers the three operands of the warp in a per-warp buffer between two warp
// barriers. Accumulation: float in k order starting from C; half accumulators are summed in
// float and rounded once; int8 products summed exactly in int32.
#ifndef EI_EMU_WMMA_H_
#define EI_EMU_WMMA_H_

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <typename Use, typename T>
struct frag_traits;
template <> struct frag_traits<matrix_a, __half> { enum { n = 16 }; };
template <> struct frag_traits<matrix_b, __half> { enum { n = 16 }; };
template <> struct frag_traits<accumulator, float> { enum { n = 8 }; };
template <> struct frag_traits<accumulator, __half> { enum { n = 8 }; };
template <> struct frag_traits<matrix_a, signed char> { enum { n = 8 }; };
template <> struct frag_traits<matrix_b, signed char> { enum { n = 8 }; };
template <> struct frag_traits<accumulator, int> { enum { n = 8 }; };

inline unsigned entry(int i) { return (unsigned(i) * 32u + ei_emu::lane()) & 255u; }

// wmma operations are warp-collective: a barrier of the warp that all 32 lanes must reach
inline void check_warp(const char* what) {
    if (ei_emu::warp_sync(0xffffffffu) != 32u) ei_emu::trap(what);
}

template <typename T>
inline void check_pointer(const T* p, unsigned ldm) {
    // the device requires 256-bit aligned pointers and ldm a multiple of 16 bytes
    if (reinterpret_cast<uintptr_t>(p) % 32u != 0)
        ei_emu::trap("wmma load/store pointer is not 32-byte aligned");
    if ((ldm * sizeof(T)) % 16u != 0)
        ei_emu::trap("wmma ldm is not a multiple of 16 bytes");
}

template <typename Layout>
inline size_t offset(unsigned row, unsigned col, unsigned ldm) {
    return std::is_same<Layout, col_major>::value ? size_t(col) * ldm + row
                                                  : size_t(row) * ldm + col;
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the subset has wmma shape 16x16x16 only");

  public:
    typedef T element_type;
    typedef T storage_element_type;
    enum { num_elements = detail::frag_traits<Use, T>::n };
    T x[num_elements];
};

template <typename Use, typename T, typename Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, const T& v) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

template <typename Use, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value,
                  "an accumulator load takes a layout_t argument");
    detail::check_warp("wmma::load_matrix_sync needs all 32 lanes of the warp");
    detail::check_pointer(p, ldm);
    for (int i = 0; i < f.num_elements; ++i) {
        unsigned m = detail::entry(i);
        f.x[i] = p[detail::offset<Layout>(m / 16, m % 16, ldm)];
    }
}

template <typename T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const T* p, unsigned ldm,
                             layout_t layout) {
    detail::check_warp("wmma::load_matrix_sync needs all 32 lanes of the warp");
    detail::check_pointer(p, ldm);
    for (int i = 0; i < f.num_elements; ++i) {
        unsigned m = detail::entry(i);
        f.x[i] = layout == mem_col_major ? p[detail::offset<col_major>(m / 16, m % 16, ldm)]
                                         : p[detail::offset<row_major>(m / 16, m % 16, ldm)];
    }
}

template <typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm,
                              layout_t layout) {
    detail::check_warp("wmma::store_matrix_sync needs all 32 lanes of the warp");
    detail::check_pointer(p, ldm);
    for (int i = 0; i < f.num_elements; ++i) {
        unsigned m = detail::entry(i);
        size_t at = layout == mem_col_major ? detail::offset<col_major>(m / 16, m % 16, ldm)
                                            : detail::offset<row_major>(m / 16, m % 16, ldm);
        p[at] = f.x[i];
    }
}

namespace detail {
// Gathers the warp's A, B and C into the per-warp buffer (as float: exact for half and
// int8 operands, and for int32 accumulators below 2^24 -- C of an int accumulator is kept
// separately as int bits), then every lane computes its own entries of D.
template <typename TA, typename LA, typename LB, typename TC, typename TD>
inline void mma(fragment<accumulator, 16, 16, 16, TD>& d,
                const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
                const fragment<matrix_b, 16, 16, 16, TA, LB>& b,
                const fragment<accumulator, 16, 16, 16, TC>& c) {
    check_warp("wmma::mma_sync needs all 32 lanes of the warp");
    float* buf = ei_emu::warp_scratch();
    float *A = buf, *B = buf + 256;
    int32_t* C = reinterpret_cast<int32_t*>(buf + 512);
    for (int i = 0; i < 8; ++i) {  // entries 0..255 once: the first 8 elements of each lane
        unsigned m = entry(i);
        A[m] = float(a.x[i]);
        B[m] = float(b.x[i]);
        if (std::is_same<TC, int>::value) {
            int32_t v = int32_t(c.x[i]);
            C[m] = v;
        } else {
            float v = float(c.x[i]);
            memcpy(&C[m], &v, 4);
        }
    }
    ei_emu::warp_sync(0xffffffffu);
    TD out[8];
    for (int i = 0; i < 8; ++i) {
        unsigned m = entry(i), r = m / 16, col = m % 16;
        if (std::is_same<TC, int>::value) {
            uint32_t acc = uint32_t(C[m]);  // wraps around as the device does (satf=false)
            for (int k = 0; k < 16; ++k)
                acc += uint32_t(int32_t(A[r * 16 + k]) * int32_t(B[k * 16 + col]));
            out[i] = TD(int32_t(acc));
        } else {
            float acc;
            memcpy(&acc, &C[m], 4);
            for (int k = 0; k < 16; ++k) acc += A[r * 16 + k] * B[k * 16 + col];
            out[i] = TD(acc);
        }
    }
    ei_emu::warp_sync(0xffffffffu);
    for (int i = 0; i < 8; ++i) d.x[i] = out[i];
}
}  // namespace detail

template <typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, __half, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, __half, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
    detail::mma(d, a, b, c);
}
template <typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, __half>& d,
                     const fragment<matrix_a, 16, 16, 16, __half, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, __half, LB>& b,
                     const fragment<accumulator, 16, 16, 16, __half>& c) {
    detail::mma(d, a, b, c);
}
template <typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, int>& d,
                     const fragment<matrix_a, 16, 16, 16, signed char, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, signed char, LB>& b,
                     const fragment<accumulator, 16, 16, 16, int>& c, bool satf = false) {
    if (satf) ei_emu::trap("wmma::mma_sync with satf=true is outside the subset");
    detail::mma(d, a, b, c);
}
}  // namespace wmma
}  // namespace nvcuda

#endif  // EI_EMU_WMMA_H_
