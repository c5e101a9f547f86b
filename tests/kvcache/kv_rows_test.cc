#include "kvcache/kv_rows.h"

#include <catch2/catch.hpp>
#include <vector>

namespace tessera::kvcache {
namespace {

KvCacheShape Shape(int32_t block_size, int32_t num_blocks) {
  KvCacheShape shape;
  shape.num_layers = 2;
  shape.num_kv_heads = 2;
  shape.head_dim = 4;
  shape.block_size = block_size;
  shape.num_blocks = num_blocks;
  return shape;
}

uint16_t Mark(bool key, int32_t layer, int32_t position, int32_t element) {
  return static_cast<uint16_t>((key ? 0x8000 : 0) | layer << 12 | position << 3 | element);
}

TEST_CASE("CopyKvRows: positions move between caches of different block sizes and via a flat "
          "buffer unchanged", "[kvcache]") {
  // Source: block size 4, a shuffled block table. Destination: block size 3.
  auto src = PagedKvCache::Create(Shape(4, 8)).value();
  auto dst = PagedKvCache::Create(Shape(3, 12)).value();
  const std::vector<BlockId> src_blocks = {5, 2, 7, 0};  // Positions 0..15.
  const std::vector<BlockId> dst_blocks = {11, 3, 4, 9, 1, 0};  // Positions 0..17.
  const int32_t positions = 14, kv_dim = 8;
  for (int32_t layer = 0; layer < 2; ++layer) {
    for (int32_t p = 0; p < positions; ++p) {
      for (int32_t e = 0; e < kv_dim; ++e) {
        src->keys(layer, src_blocks[p / 4])[(p % 4) * kv_dim + e] = Mark(true, layer, p, e);
        src->values(layer, src_blocks[p / 4])[(p % 4) * kv_dim + e] = Mark(false, layer, p, e);
      }
    }
  }
  // Layer 0 cache to cache in two uneven chunks; layer 1 through a flat buffer, starting at
  // position 5 with the source table starting at the block of position 5.
  KvRows from = KvRows::InCache(src->data(), src->layout(), src_blocks, 0);
  KvRows to = KvRows::InCache(dst->data(), dst->layout(), dst_blocks, 0);
  CopyKvRows(from, to, 0, 0, 5);
  CopyKvRows(from, to, 0, 5, 9);
  std::vector<uint16_t> keys(9 * kv_dim), values(9 * kv_dim);
  KvRows flat = KvRows::Flat(reinterpret_cast<uint8_t*>(keys.data()),
                             reinterpret_cast<uint8_t*>(values.data()), kv_dim, 5);
  KvRows from_tail = KvRows::InCache(src->data(), src->layout(),
                                     std::span<const BlockId>(src_blocks).subspan(1), 5);
  CopyKvRows(from_tail, flat, 1, 5, 9);
  CopyKvRows(flat, to, 1, 5, 9);
  int mismatches = 0;
  for (int32_t layer = 0; layer < 2; ++layer) {
    for (int32_t p = layer == 0 ? 0 : 5; p < positions; ++p) {
      for (int32_t e = 0; e < kv_dim; ++e) {
        mismatches += dst->keys(layer, dst_blocks[p / 3])[(p % 3) * kv_dim + e] != Mark(true, layer, p, e);
        mismatches += dst->values(layer, dst_blocks[p / 3])[(p % 3) * kv_dim + e] != Mark(false, layer, p, e);
      }
    }
  }
  CHECK(mismatches == 0);
  // Layer 1 positions before 5 were not copied.
  CHECK(dst->keys(1, dst_blocks[0])[0] == 0);
}

}  // namespace
}  // namespace tessera::kvcache
