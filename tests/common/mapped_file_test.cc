#include "common/mapped_file.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

namespace tessera {
namespace {

TEST_CASE("MappedFile: maps a file's bytes and reports missing files by path", "[common]") {
  char path_template[] = "/tmp/tessera_mapped_XXXXXX";
  int fd = mkstemp(path_template);
  REQUIRE(fd >= 0);
  close(fd);
  std::string path = path_template;
  { std::ofstream(path, std::ios::binary) << "tessera"; }
  auto file = MappedFile::Open(path).value();
  CHECK(std::string(reinterpret_cast<const char*>(file->bytes().data()), file->bytes().size()) ==
        "tessera");
  std::remove(path.c_str());

  auto missing = MappedFile::Open("/nonexistent/model.gguf");
  REQUIRE(absl::IsNotFound(missing.status()));
  CHECK(missing.status().message().find("/nonexistent/model.gguf") != std::string::npos);
  CHECK(absl::IsInvalidArgument(MappedFile::Open("/tmp").status()));
}

}  // namespace
}  // namespace tessera
