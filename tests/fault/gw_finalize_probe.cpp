// MPI_Finalize under gradwire::detail::bound_finalize (src/fault/finalize_bound.hpp), at one
// rank. "hang": an MPI_COMM_SELF attribute whose delete callback sleeps 30 s stands in for a
// finalize that does not return; attributes are deleted in the reverse order of setting, so
// the bound's callback runs first and arms it. The bound must end the process at 1 s.
// "return": the finalize returns; the process then outlives the bound and must exit 0.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "fault/finalize_bound.hpp"

namespace {

int slow_delete(MPI_Comm, int, void*, void*) {
  std::this_thread::sleep_for(std::chrono::seconds(30));
  return MPI_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const bool hang = argc > 1 && std::strcmp(argv[1], "hang") == 0;
  if (hang) {
    int key = MPI_KEYVAL_INVALID;
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, slow_delete, &key, nullptr);
    MPI_Comm_set_attr(MPI_COMM_SELF, key, nullptr);
  }
  gradwire::detail::bound_finalize(1.0);
  MPI_Finalize();
  if (hang) {
    std::puts("FAIL: MPI_Finalize returned: the slow attribute was not deleted in it");
    return 2;
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // past the bound: it must stay quiet
  std::puts("PASS: MPI_Finalize returned and the process went on");
  return 0;
}
