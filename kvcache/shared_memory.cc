#include "kvcache/shared_memory.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tessera::kvcache {
namespace {

absl::Status Errno(absl::string_view what, absl::string_view name) {
  int err = errno;
  std::string message = absl::StrCat(what, " shared memory ", name, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == ENOMEM || err == ENOSPC) return absl::ResourceExhaustedError(message);
  return absl::UnavailableError(message);
}

// Unlinks /dev/shm/tessera-<tag>-<pid>-* of processes that no longer exist (kill -9 leaves
// them behind; nothing else would ever free them).
void SweepStale(absl::string_view tag) {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return;
  const std::string prefix = absl::StrCat("tessera-", tag, "-");
  while (dirent* entry = readdir(dir)) {
    absl::string_view file = entry->d_name;
    if (!absl::ConsumePrefix(&file, prefix)) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(file, '-');
    int pid = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (kill(pid, 0) == -1 && errno == ESRCH) {
      shm_unlink(absl::StrCat("/", entry->d_name).c_str());
    }
  }
  closedir(dir);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedMemoryRegion>> SharedMemoryRegion::Create(
    absl::string_view tag, size_t bytes) {
  static std::atomic<int> counter{0};
  if (bytes == 0) return absl::InvalidArgumentError("shared memory size must be positive");
  SweepStale(tag);
  // Pages of a shared-memory file are allocated on first touch; if /dev/shm (often 64 MiB in
  // containers) cannot hold the region, touching it later would kill the process with
  // SIGBUS. Refuse up front instead.
  struct statvfs fs;
  if (statvfs("/dev/shm", &fs) == 0 &&
      static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize < bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("/dev/shm has ", static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize,
                     " bytes free, fewer than the ", bytes, " requested"));
  }
  std::string name = absl::StrCat("/tessera-", tag, "-", getpid(), "-", counter.fetch_add(1));
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return Errno("creating", name);
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    absl::Status status = Errno("sizing", name);
    close(fd);
    shm_unlink(name.c_str());
    return status;
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (data == MAP_FAILED) {
    absl::Status status = Errno("mapping", name);
    shm_unlink(name.c_str());
    return status;
  }
  return std::unique_ptr<SharedMemoryRegion>(
      new SharedMemoryRegion(std::move(name), static_cast<uint8_t*>(data), bytes, true));
}

absl::StatusOr<std::unique_ptr<SharedMemoryRegion>> SharedMemoryRegion::OpenReadOnly(
    absl::string_view name, size_t expected_bytes) {
  std::string path(name);
  int fd = shm_open(path.c_str(), O_RDONLY, 0);
  if (fd < 0) return Errno("opening", name);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    absl::Status status = Errno("inspecting", name);
    close(fd);
    return status;
  }
  if (static_cast<size_t>(st.st_size) != expected_bytes) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat("shared memory ", name, " has ", st.st_size,
                                                      " bytes, expected ", expected_bytes));
  }
  void* data = mmap(nullptr, expected_bytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (data == MAP_FAILED) return Errno("mapping", name);
  return std::unique_ptr<SharedMemoryRegion>(new SharedMemoryRegion(
      std::move(path), static_cast<uint8_t*>(data), expected_bytes, false));
}

SharedMemoryRegion::~SharedMemoryRegion() {
  munmap(data_, size_);
  if (owner_) shm_unlink(name_.c_str());
}

}  // namespace tessera::kvcache
