// __half and half2 for the emulator: IEEE binary16 bits, conversions rounded to nearest even
// (bit-exact with numpy.float16); +, -, *, / done in float and rounded once more to half, which
// is the correctly rounded result (float carries 2*11+2 significant bits).
#ifndef EI_EMU_HALF_H_
#define EI_EMU_HALF_H_

namespace ei_emu {
inline unsigned short float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    unsigned short sign = (unsigned short)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)  // inf, or NaN kept quiet with its top payload bits
        return sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u);
    uint32_t e = ax >> 23, m = ax & 0x7fffffu;
    if (e >= 143) return sign | 0x7c00u;  // >= 2^16: overflows to inf
    if (e >= 113) {                         // normal half
        uint32_t h = ((e - 112) << 10) | (m >> 13), rem = m & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may reach inf
        return (unsigned short)(sign | h);
    }
    if (e < 102) return sign;  // below half the smallest subnormal: rounds to zero
    m |= 0x800000u;             // subnormal half: value = m * 2^(e-150), unit 2^-24
    uint32_t s = 126 - e, h = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return (unsigned short)(sign | h);
}

inline float half_bits_to_float(unsigned short h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        x = sign;
    } else {  // subnormal: normalize
        e = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            --e;
        }
        x = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}
}  // namespace ei_emu

struct __align__(2) __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(ei_emu::float_to_half_bits(f)) {}
    __half(int i) : __x(ei_emu::float_to_half_bits(float(i))) {}
    operator float() const { return ei_emu::half_bits_to_float(__x); }
    __half& operator=(float f) {
        __x = ei_emu::float_to_half_bits(f);
        return *this;
    }
};
struct __align__(4) __half2 {
    __half x, y;
};
typedef __half half;
typedef __half2 half2;

inline __half __ushort_as_half(unsigned short b) { __half h; h.__x = b; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline __half2 __floats2half2_rn(float a, float b) { return {__half(a), __half(b)}; }
inline __half2 __float2half2_rn(float a) { return {__half(a), __half(a)}; }
inline __half2 __halves2half2(__half a, __half b) { return {a, b}; }
inline __half2 __half2half2(__half a) { return {a, a}; }
inline float2 __half22float2(__half2 h) { return {float(h.x), float(h.y)}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline float __low2float(__half2 h) { return float(h.x); }
inline float __high2float(__half2 h) { return float(h.y); }

inline __half __hadd(__half a, __half b) { return __half(float(a) + float(b)); }
inline __half __hsub(__half a, __half b) { return __half(float(a) - float(b)); }
inline __half __hmul(__half a, __half b) { return __half(float(a) * float(b)); }
inline __half __hdiv(__half a, __half b) { return __half(float(a) / float(b)); }
namespace ei_emu {
// d rounded to float toward zero with the last bit set when inexact ("round to odd"): a
// second rounding of that to half (11 bits < 24 - 2) is then the correct rounding of d
inline float double_to_float_odd(double d) {
    float f = float(d);
    if (double(f) != d && f == f) {
        uint32_t bits;
        memcpy(&bits, &f, 4);
        if (fabs(double(f)) > fabs(d)) bits -= 1;  // rounded away from zero: truncate instead
        bits |= 1u;
        memcpy(&f, &bits, 4);
    }
    return f;
}
}  // namespace ei_emu

inline __half __hfma(__half a, __half b, __half c) {
    // a*b is exact in double, and so is a*b + c wherever its rounding to half is close to a
    // tie; rounding to odd on the way through float keeps the one rounding to half correct
    return __half(ei_emu::double_to_float_odd(double(float(a)) * double(float(b)) +
                                             double(float(c))));
}
inline __half __hneg(__half a) { __half r = a; r.__x ^= 0x8000u; return r; }
inline __half __habs(__half a) { __half r = a; r.__x &= 0x7fffu; return r; }
inline __half __hmax(__half a, __half b) { return __half(fmaxf(float(a), float(b))); }
inline __half __hmin(__half a, __half b) { return __half(fminf(float(a), float(b))); }
inline bool __hgt(__half a, __half b) { return float(a) > float(b); }
inline bool __hge(__half a, __half b) { return float(a) >= float(b); }
inline bool __hlt(__half a, __half b) { return float(a) < float(b); }
inline bool __hle(__half a, __half b) { return float(a) <= float(b); }
inline bool __heq(__half a, __half b) { return float(a) == float(b); }
inline bool __hisnan(__half a) { return float(a) != float(a); }
inline __half2 __hadd2(__half2 a, __half2 b) { return {__hadd(a.x, b.x), __hadd(a.y, b.y)}; }
inline __half2 __hsub2(__half2 a, __half2 b) { return {__hsub(a.x, b.x), __hsub(a.y, b.y)}; }
inline __half2 __hmul2(__half2 a, __half2 b) { return {__hmul(a.x, b.x), __hmul(a.y, b.y)}; }
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
    return {__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)};
}
inline __half2 __hmax2(__half2 a, __half2 b) { return {__hmax(a.x, b.x), __hmax(a.y, b.y)}; }
inline __half2 __hmin2(__half2 a, __half2 b) { return {__hmin(a.x, b.x), __hmin(a.y, b.y)}; }

inline __half operator+(const __half& a, const __half& b) { return __hadd(a, b); }
inline __half operator-(const __half& a, const __half& b) { return __hsub(a, b); }
inline __half operator*(const __half& a, const __half& b) { return __hmul(a, b); }
inline __half operator/(const __half& a, const __half& b) { return __hdiv(a, b); }
inline __half operator-(const __half& a) { return __hneg(a); }
inline __half& operator+=(__half& a, const __half& b) { return a = __hadd(a, b); }
inline __half& operator*=(__half& a, const __half& b) { return a = __hmul(a, b); }
inline bool operator>(const __half& a, const __half& b) { return __hgt(a, b); }
inline bool operator<(const __half& a, const __half& b) { return __hlt(a, b); }
inline bool operator>=(const __half& a, const __half& b) { return __hge(a, b); }
inline bool operator<=(const __half& a, const __half& b) { return __hle(a, b); }
inline bool operator==(const __half& a, const __half& b) { return __heq(a, b); }
inline bool operator!=(const __half& a, const __half& b) { return !__heq(a, b); }

#endif  // EI_EMU_HALF_H_
