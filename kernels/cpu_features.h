// Which instruction sets this CPU has, and which kernel path Tessera runs on it. The path is
// chosen once, at first use, from CPUID; TESSERA_ISA=scalar|avx2|avx512 in the environment
// forces a lower one (benchmarks and the kernel tests compare paths this way).
// Thread-safe.
#ifndef TESSERA_KERNELS_CPU_FEATURES_H_
#define TESSERA_KERNELS_CPU_FEATURES_H_

#include <vector>

#include "absl/strings/string_view.h"

namespace tessera::kernels {

struct CpuFeatures {
  bool avx2 = false;         // With FMA and F16C.
  bool avx512 = false;       // F, BW, VL, DQ.
  bool avx512_vnni = false;  // VPDPBUSD.
  bool avx512_bf16 = false;  // VDPBF16PS.
};

// Kernel paths, weakest first.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const CpuFeatures& GetCpuFeatures();
// Paths this CPU can run, weakest first (always includes kScalar).
std::vector<Isa> SupportedIsas();
// The path the kernels use by default: the best supported, or TESSERA_ISA if set and supported.
Isa DefaultIsa();
absl::string_view IsaName(Isa isa);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_CPU_FEATURES_H_
