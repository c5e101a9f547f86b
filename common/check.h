// Invariant checks. A failed check is a bug in Tessera, never bad input: input errors are
// returned as absl::Status. Thread-safe.
#ifndef TESSERA_COMMON_CHECK_H_
#define TESSERA_COMMON_CHECK_H_

namespace tessera::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition);
}  // namespace tessera::internal

#define TESSERA_CHECK(cond) \
  ((cond) ? (void)0 : ::tessera::internal::CheckFailed(__FILE__, __LINE__, #cond))

#ifdef NDEBUG
#define TESSERA_DCHECK(cond) ((void)0)
#else
#define TESSERA_DCHECK(cond) TESSERA_CHECK(cond)
#endif

#endif  // TESSERA_COMMON_CHECK_H_
