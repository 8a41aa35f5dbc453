#include "fault/finalize_bound.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "call_info.hpp"
#include "watchdog.hpp"

namespace gradwire::detail {
namespace {

double finalize_limit_s = 0;

// MPI_Finalize deletes MPI_COMM_SELF's attributes before it does anything else (the MPI
// standard's "allowing user functions at process termination"), so this delete callback marks
// the start of the finalize. The watchdog thread keeps running through it.
int on_finalize(MPI_Comm, int, void*, void*) {
  static WatchSlot slot([](const CallInfo&, double limit) {
    int finalized = 0;
    MPI_Finalized(&finalized);  // callable from any thread at any time
    if (finalized) return;      // it returned: whatever the process does next is its own
    std::fprintf(stderr,
                 "gradwire: MPI_Finalize did not complete within %g s (GRADWIRE_INIT_TIMEOUT) "
                 "after a merge this process abandoned (docs/fault-tolerance.md); exiting with "
                 "status 1\n",
                 limit);
    std::fflush(stderr);
    std::_Exit(1);
  });
  CallInfo call;
  call.collective = "MPI_Finalize";
  slot.arm(finalize_limit_s, call);
  return MPI_SUCCESS;
}

}  // namespace

void bound_finalize(double limit_s) {
  static std::once_flag once;
  std::call_once(once, [limit_s] {
    finalize_limit_s = limit_s;
    int key = MPI_KEYVAL_INVALID;
    if (MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, on_finalize, &key, nullptr) == MPI_SUCCESS)
      MPI_Comm_set_attr(MPI_COMM_SELF, key, nullptr);
  });
}

}  // namespace gradwire::detail
