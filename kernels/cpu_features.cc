#include "kernels/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>
#include <cstring>

namespace tessera::kernels {
namespace {

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  bool fma = ecx & bit_FMA;
  bool f16c = ecx & bit_F16C;
  bool osxsave = ecx & bit_OSXSAVE;
  if (!osxsave) return f;
  // The OS must save the wide registers on context switch (XCR0).
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  bool os_avx = (xcr0_lo & 0x6) == 0x6;
  bool os_avx512 = os_avx && (xcr0_lo & 0xe0) == 0xe0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  f.avx2 = os_avx && (ebx & bit_AVX2) && fma && f16c;
  f.avx512 = f.avx2 && os_avx512 && (ebx & bit_AVX512F) && (ebx & bit_AVX512BW) &&
             (ebx & bit_AVX512VL) && (ebx & bit_AVX512DQ);
  f.avx512_vnni = f.avx512 && (ecx & bit_AVX512VNNI);
  unsigned eax1, ebx1, ecx1, edx1;
  if (f.avx512 && __get_cpuid_count(7, 1, &eax1, &ebx1, &ecx1, &edx1)) {
    f.avx512_bf16 = eax1 & (1u << 5);
  }
  return f;
}

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

std::vector<Isa> SupportedIsas() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<Isa> isas = {Isa::kScalar};
  if (f.avx2) isas.push_back(Isa::kAvx2);
  // The AVX-512 path's integer dot products need VNNI.
  if (f.avx512_vnni) isas.push_back(Isa::kAvx512);
  return isas;
}

Isa DefaultIsa() {
  static const Isa isa = [] {
    std::vector<Isa> supported = SupportedIsas();
    Isa best = supported.back();
    const char* forced = std::getenv("TESSERA_ISA");
    if (forced == nullptr) return best;
    for (Isa candidate : supported) {
      if (IsaName(candidate) == forced) return candidate;
    }
    return best;
  }();
  return isa;
}

absl::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

}  // namespace tessera::kernels
