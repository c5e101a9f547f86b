// Lets two micro-batches of one step take turns on a rank's compute: only the lane holding the
// baton computes, and a lane hands it over for as long as it waits in a collective (dispatch
// or combine). So one lane's communication overlaps the other's compute, as on hardware with
// a copy engine, without the two lanes ever splitting the rank's cores between them (which
// only slows both). A lane that holds the baton never waits on a peer, so taking turns cannot
// deadlock a group: every wait ends when some holder reaches its next collective or finishes.
// Thread-safety: thread-safe; each lane holds it at most once.
#ifndef TESSERA_ENGINE_MODELS_COMPUTE_BATON_H_
#define TESSERA_ENGINE_MODELS_COMPUTE_BATON_H_

#include "absl/synchronization/mutex.h"

namespace tessera::engine {

class ComputeBaton {
 public:
  void Acquire() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) { mu_.Lock(); }
  void Release() ABSL_UNLOCK_FUNCTION(mu_) { mu_.Unlock(); }

 private:
  absl::Mutex mu_;
};

// Holds `baton` (if not null) for the scope.
class BatonHeld {
 public:
  explicit BatonHeld(ComputeBaton* baton) : baton_(baton) {
    if (baton_ != nullptr) baton_->Acquire();
  }
  ~BatonHeld() {
    if (baton_ != nullptr) baton_->Release();
  }
  BatonHeld(const BatonHeld&) = delete;
  BatonHeld& operator=(const BatonHeld&) = delete;

 private:
  ComputeBaton* const baton_;
};

// Gives `baton` (if not null, and held by the caller) to the other lane for the scope.
class BatonYielded {
 public:
  explicit BatonYielded(ComputeBaton* baton) : baton_(baton) {
    if (baton_ != nullptr) baton_->Release();
  }
  ~BatonYielded() {
    if (baton_ != nullptr) baton_->Acquire();
  }
  BatonYielded(const BatonYielded&) = delete;
  BatonYielded& operator=(const BatonYielded&) = delete;

 private:
  ComputeBaton* const baton_;
};

}  // namespace tessera::engine

#endif  // TESSERA_ENGINE_MODELS_COMPUTE_BATON_H_
