#include "progress_board.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

namespace gradwire::detail {
namespace {

constexpr std::size_t kLine = 64;  // one cache line per rank: no false sharing on enter()

// 'T' when stopped by a signal, 'Z'/'X' when dead, '?' when unknown (Linux /proc).
char process_state(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return '?';
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : '?';
}

}  // namespace

void ProgressBoard::attach(MPI_Comm comm) noexcept {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm shm = MPI_COMM_NULL;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &shm) != MPI_SUCCESS)
    return;
  MPI_Comm_set_errhandler(shm, MPI_ERRORS_RETURN);
  int n = 1;
  MPI_Comm_rank(shm, &me_);
  MPI_Comm_size(shm, &n);
  ranks_.resize(static_cast<std::size_t>(n));
  // The host's first rank names and creates the segment; the others open it; it is unlinked
  // once all have mapped it, so nothing is left behind in /dev/shm.
  static std::atomic<unsigned> serial{0};
  char name[64] = {0};
  int fd = -1;
  bytes_ = static_cast<std::size_t>(n) * kLine;
  if (me_ == 0) {
    std::snprintf(name, sizeof name, "/gradwire-%ld-%u", static_cast<long>(getpid()),
                  serial.fetch_add(1));
    fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd >= 0 && ftruncate(fd, static_cast<off_t>(bytes_)) != 0) {
      close(fd);
      shm_unlink(name);
      fd = -1;
    }
    if (fd < 0) name[0] = 0;
  }
  int ok = MPI_Bcast(name, sizeof name, MPI_CHAR, 0, shm) == MPI_SUCCESS && name[0] != 0;
  if (ok && me_ != 0) fd = shm_open(name, O_RDWR, 0600);
  if (ok && fd >= 0) {
    map_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map_ == MAP_FAILED) map_ = nullptr;
  }
  if (fd >= 0) close(fd);
  int mapped = map_ != nullptr ? 1 : 0;
  if (MPI_Allreduce(MPI_IN_PLACE, &mapped, 1, MPI_INT, MPI_MIN, shm) != MPI_SUCCESS) mapped = 0;
  if (me_ == 0 && name[0] != 0) shm_unlink(name);
  if (mapped &&
      MPI_Allgather(&rank, 1, MPI_INT, ranks_.data(), 1, MPI_INT, shm) != MPI_SUCCESS)
    mapped = 0;
  MPI_Comm_free(&shm);
  if (!mapped) {
    release();
    return;
  }
  auto* base = static_cast<unsigned char*>(map_);
  for (int r = 0; r < n; ++r)
    lines_.push_back(reinterpret_cast<std::atomic<std::uint64_t>*>(base + r * kLine));
  mine_ = lines_[static_cast<std::size_t>(me_)];
  mine_[2].store(static_cast<std::uint64_t>(getpid()), std::memory_order_relaxed);
}

void ProgressBoard::release() noexcept {
  mine_ = nullptr;
  lines_.clear();
  if (map_) munmap(map_, bytes_);
  map_ = nullptr;
}

std::string ProgressBoard::culprits(Counter c, int node_count) const {
  if (!mine_) return "";
  const std::uint64_t at = mine_[c].load(std::memory_order_relaxed);
  std::string exited, stopped, behind, failed;
  bool non_finite = false;
  auto add = [](std::string& s, int r) { s += (s.empty() ? "" : ", ") + std::to_string(r); };
  for (std::size_t i = 0; i < lines_.size(); ++i) {
    if (static_cast<int>(i) == me_) continue;
    const int r = ranks_[i];
    const auto pid = static_cast<long>(lines_[i][2].load(std::memory_order_relaxed));
    if (pid <= 0) continue;  // not published yet
    const char state = process_state(pid);
    if ((kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) || state == 'Z' ||
        state == 'X') {
      add(exited, r);
    } else if (state == 'T' || state == 't') {
      add(stopped, r);
    } else if ((lines_[i][4].load(std::memory_order_relaxed) & 0xffu) ==
                   static_cast<std::uint64_t>(c + 1) &&
               lines_[i][3].load(std::memory_order_relaxed) == at) {
      add(failed, r);
      non_finite = non_finite || (lines_[i][4].load(std::memory_order_relaxed) & 0x100u) != 0;
    } else if (lines_[i][c].load(std::memory_order_relaxed) < at) {
      add(behind, r);
    }
  }
  std::string s;
  if (!exited.empty()) s += "; rank(s) " + exited + " on this host have exited";
  if (!stopped.empty()) s += "; rank(s) " + stopped + " on this host are stopped (SIGSTOP)";
  if (!failed.empty()) {
    s += "; rank(s) " + failed + " failed this call with an error" +
         (non_finite ? " (a non-finite value in the input: NaN or Inf)" : "") +
         " (see the message there)";
  }
  if (!behind.empty()) s += "; rank(s) " + behind + " have not reached this call";
  if (s.empty()) s = "; every rank on this host has reached this call";
  if (node_count > 1) s += " (ranks on other hosts not checked)";
  return s;
}

}  // namespace gradwire::detail
