// The default model, loaded once per test binary (loading packs ~100 MB of weights).
#ifndef TESSERA_TESTS_ENGINE_MODEL_FIXTURE_H_
#define TESSERA_TESTS_ENGINE_MODEL_FIXTURE_H_

#include <catch2/catch.hpp>

#include "engine/runtime/loaded_model.h"
#include "tests/test_paths.h"

namespace tessera::testing {

inline engine::LoadedModel& DefaultModel() {
  static engine::LoadedModel* model = [] {
    absl::StatusOr<engine::LoadedModel> m = engine::LoadedModel::Load(DefaultModelPath(), 2);
    if (!m.ok())
      FAIL("cannot load the default model (run scripts/setup): " << m.status().ToString());
    return new engine::LoadedModel(std::move(*m));
  }();
  return *model;
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_ENGINE_MODEL_FIXTURE_H_
