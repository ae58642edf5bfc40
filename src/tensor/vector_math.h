// vector_math.h — elementwise math written so that the compiler vectorises it, for the fused
// CPU loops (fused_pointwise.cpp, linear_cross_entropy.cpp): an exp without a library call, a
// sum over a row kept in 16 lanes, and the attribute that builds a loop three times (AVX-512,
// AVX2 with FMA, plain x86-64), the best one picked for the machine when the library loads.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOONTUNE_VECTOR_LOOP __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MOONTUNE_VECTOR_LOOP
#endif

namespace moontune {

// e^x in float32 (Cephes' expf: a range reduction by ln 2 and a degree-6 polynomial; within 2
// units in the last place of std::exp over the clamp range). Inputs are clamped to
// [-87.3, 88.3], where the result stays a normal float: e^-87.3 ≈ 1.2e-38 stands for anything
// smaller, e^88.3 ≈ 2.2e38 for anything larger; NaN stays NaN.
__attribute__((always_inline)) inline float exp_approx(float x) {
  float c = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  // n = round(c / ln 2), by the float rounding of adding 1.5·2²³.
  float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = c - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return (x != x) ? x : e * scale;
}

// Σ a[i]·b[i] over n floats, in 16 partial sums (which the compiler keeps in vector lanes).
__attribute__((always_inline)) inline float dot(const float* a, const float* b, int64_t n) {
  float lanes[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) lanes[j] += a[i + j] * b[i + j];
  }
  float total = 0;
  for (int j = 0; j < 16; ++j) total += lanes[j];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

}  // namespace moontune
