// Reads a JSON document from tests/data, failing the current test if it is missing.
#ifndef TESSERA_TESTS_TEST_JSON_H_
#define TESSERA_TESTS_TEST_JSON_H_

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/test_paths.h"

namespace tessera::testing {

inline nlohmann::json LoadTestJson(const std::string& relative) {
  std::ifstream in(TestDataPath(relative));
  INFO("tests/data/" << relative);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_TEST_JSON_H_
