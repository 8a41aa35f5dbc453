// The plan-state file (Plan::save_state / load_state; docs/compressed-collectives.md,
// "Checkpoints"): everything a plan carries from one step to the next, so that a run restored
// on the same number of ranks takes the very step the uninterrupted run takes. Host byte order:
//
//   "GWPSTATE", u32 version 1, u32 collective, u64 global elements, u64 step, u32 ranks,
//   u32 fields, per field (u32 length, name, u32 length, value): the configuration it was
//   saved with; u64 n + n float32: the warm start (PowerSGD's Q, identical on every rank);
//   per rank (u64 length + that many bytes): the rank's own state (RankState below);
//   u32 CRC-32 (zlib) of everything before it.
//
// Only the bytes: gathering, sharing out and redistributing are the plan's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gradwire/plan.hpp"

namespace gradwire::coll {

// One rank's state: its error-feedback slots, each standing for global elements
// [offset, offset + data.size()), and its DGC velocity (empty without momentum).
struct RankState {
  struct Slot {
    std::uint64_t offset = 0;
    std::vector<float> data;
  };
  std::vector<Slot> slots;
  std::vector<float> velocity;
};

// The bytes one rank sends for the file, and back. decode_rank_state returns "" or why the
// bytes are not a valid state for a plan of `elements` global elements.
std::vector<char> encode_rank_state(const RankState& s);
std::string decode_rank_state(const std::vector<char>& bytes, std::size_t elements, RankState& s);
// Which slots (offset, length) and how much velocity: a restore is exact only where every
// rank's layout hash equals the one its saved state had.
std::uint64_t layout_hash(const RankState& s);

// (name, value) pairs of the configuration a state belongs to; a load compares them all.
using StateFields = std::vector<std::pair<std::string, std::string>>;

struct StateFile {
  PlanCollective collective = PlanCollective::Allreduce;
  std::uint64_t elements = 0, step = 0;
  StateFields fields;
  std::vector<float> warm_start;
  std::vector<std::vector<char>> ranks;  // encode_rank_state's bytes of each saving rank
};

// False when the file cannot be written.
bool write_state_file(const std::string& path, const StateFile& f);

// Reads and checks a file for a plan whose collective, elements, fields and warm-start size
// are those of `want`. Returns "" on success, else why not: not a state file, another version,
// a failed checksum, truncated, trailing bytes, each field that differs (named, with both
// values), a warm start of another size, a non-finite value. Rank states are checked by
// decode_rank_state where they are used.
std::string read_state_file(const std::string& path, const StateFile& want, StateFile& out);

}  // namespace gradwire::coll
