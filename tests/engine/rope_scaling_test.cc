#include "engine/models/rope_scaling.h"

#include <catch2/catch.hpp>
#include <cmath>

namespace tessera::engine {
namespace {

nlohmann::json DeepseekV3Config() {
  // The rotary fields of DeepSeek-V3's released config.json.
  return nlohmann::json::parse(R"({
    "max_position_embeddings": 163840, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}})");
}

TEST_CASE("RoPE scaling: no scaling gives base^(-2i/d)", "[engine][rope]") {
  const nlohmann::json config = nlohmann::json::parse(R"({"rope_theta": 10000})");
  RopeScaling rope = ReadRopeScaling(config, 16, 10000, "config.json").value();
  CHECK_FALSE(rope.yarn);
  REQUIRE(rope.inv_freq.size() == 8);
  for (int i = 0; i < 8; ++i) CHECK(rope.inv_freq[i] == Approx(std::pow(10000.0, -i / 8.0)));
  CHECK(rope.magnitude == 1.0f);
}

TEST_CASE("RoPE scaling: YaRN keeps fast pairs, divides slow ones, ramps between",
          "[engine][rope]") {
  RopeScaling rope = ReadRopeScaling(DeepseekV3Config(), 16, 10000, "config.json").value();
  CHECK(rope.yarn);
  CHECK(rope.factor == 40);
  // With 16 rotated dims, beta_fast 32 and beta_slow 1 over 4096 positions put the ramp
  // between pairs 2 and 6.
  for (int i = 0; i < 8; ++i) {
    const double plain = std::pow(10000.0, -i / 8.0);
    INFO("pair " << i);
    if (i <= 2) CHECK(rope.inv_freq[i] == Approx(plain));
    if (i >= 6) CHECK(rope.inv_freq[i] == Approx(plain / 40));
    if (i > 2 && i < 6) {
      CHECK(rope.inv_freq[i] < plain);
      CHECK(rope.inv_freq[i] > plain / 40);
    }
  }
  CHECK(rope.magnitude == Approx(1.0));  // mscale == mscale_all_dim.
  CHECK(YarnMscale(40, 1.0) == Approx(0.1 * std::log(40.0) + 1));
  CHECK(YarnMscale(0.5, 1.0) == 1.0);

  nlohmann::json config = DeepseekV3Config();
  config["rope_scaling"]["mscale_all_dim"] = 0.5;
  rope = ReadRopeScaling(config, 16, 10000, "config.json").value();
  CHECK(rope.magnitude == Approx(YarnMscale(40, 1.0) / YarnMscale(40, 0.5)));
  // Newer configs spell it rope_parameters, with rope_type and their own rope_theta.
  config = nlohmann::json::parse(R"({"max_position_embeddings": 8192, "rope_parameters":
      {"rope_type": "yarn", "rope_theta": 1000000, "factor": 4,
       "original_max_position_embeddings": 2048}})");
  rope = ReadRopeScaling(config, 64, 10000, "config.json").value();
  CHECK(rope.yarn);
  CHECK(rope.inv_freq[0] == Approx(1.0));
  CHECK(rope.inv_freq[31] == Approx(std::pow(1e6, -62.0 / 64) / 4));
  CHECK(rope.magnitude == Approx(YarnMscale(4, 1.0)));
}

TEST_CASE("RoPE scaling: unsupported types and bad fields are named", "[engine][rope]") {
  nlohmann::json config = DeepseekV3Config();
  config["rope_scaling"]["type"] = "linear";
  absl::StatusOr<RopeScaling> rope = ReadRopeScaling(config, 16, 10000, "ck/config.json");
  CHECK(rope.status().code() == absl::StatusCode::kUnimplemented);
  CHECK(rope.status().message().find("\"linear\"") != std::string::npos);

  config = DeepseekV3Config();
  config["rope_scaling"]["factor"] = "forty";
  rope = ReadRopeScaling(config, 16, 10000, "ck/config.json");
  CHECK(rope.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(rope.status().message().find("ck/config.json: rope_scaling.factor") != std::string::npos);

  config = DeepseekV3Config();
  config["rope_scaling"]["factor"] = -2;
  rope = ReadRopeScaling(config, 16, 10000, "ck/config.json");
  CHECK(rope.status().code() == absl::StatusCode::kInvalidArgument);

  config = DeepseekV3Config();
  config["rope_scaling"] = 3;
  rope = ReadRopeScaling(config, 16, 10000, "ck/config.json");
  CHECK(rope.status().message().find("must be an object") != std::string::npos);
}

}  // namespace
}  // namespace tessera::engine
