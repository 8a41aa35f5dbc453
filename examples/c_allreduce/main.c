/* Sums a vector over all ranks through gradwire's C ABI, blocking and non-blocking, and
 * checks the result. Run: mpirun -np 2 ./c_allreduce. Exit status is non-zero on every
 * rank if any rank saw a wrong value. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "gradwire/gradwire.h"

/* Prints the failed call's message and ends the whole job: the other ranks may be
 * waiting for this one inside a collective. */
#define CHECK(call)                                                             \
  do {                                                                          \
    gw_status_t st_ = (call);                                                   \
    if (st_ != GW_SUCCESS) {                                                    \
      fprintf(stderr, "c_allreduce: %s failed (%s): %s\n", #call,               \
              gw_status_string(st_), gw_last_error());                          \
      MPI_Abort(MPI_COMM_WORLD, 2);                                             \
    }                                                                           \
  } while (0)

enum { N = 1000 };

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int major = 0, minor = 0, patch = 0;
  CHECK(gw_version(&major, &minor, &patch));

  gw_comm_t comm = NULL;
  CHECK(gw_comm_create(MPI_COMM_WORLD, &comm));
  int rank = 0, size = 0;
  double rendezvous = 0;
  CHECK(gw_comm_rank(comm, &rank));
  CHECK(gw_comm_size(comm, &size));
  CHECK(gw_comm_rendezvous_seconds(comm, &rendezvous));

  /* Rank r contributes r + i + 1 at index i: small integers, exact in float. */
  static float grad[N], sum[N];
  for (int i = 0; i < N; ++i) grad[i] = (float)(rank + i + 1);
  CHECK(gw_allreduce(comm, grad, sum, N, GW_FLOAT32, GW_SUM));
  int bad = 0;
  for (int i = 0; i < N; ++i) {
    double want = (double)size * (i + 1) + size * (size - 1) / 2.0;
    if (sum[i] != want) ++bad;
  }

  /* In place and non-blocking; other work could run between start and wait. */
  static int64_t counts[N];
  for (int i = 0; i < N; ++i) counts[i] = rank + 1;
  gw_request_t req = NULL;
  CHECK(gw_iallreduce(comm, counts, counts, N, GW_INT64, GW_SUM, &req));
  CHECK(gw_request_wait(req));
  CHECK(gw_request_free(&req));
  for (int i = 0; i < N; ++i) {
    if (counts[i] != (int64_t)size * (size + 1) / 2) ++bad;
  }

  if (rank == 0) {
    printf("c_allreduce: gradwire %d.%d.%d, %d ranks, sum[0]=%g sum[%d]=%g, "
           "counts[0]=%" PRId64 ", rendezvous %.1f ms\n",
           major, minor, patch, size, sum[0], N - 1, sum[N - 1], counts[0],
           rendezvous * 1e3);
  }
  if (bad != 0) fprintf(stderr, "c_allreduce: rank %d: %d wrong values\n", rank, bad);
  int any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

  CHECK(gw_comm_destroy(&comm)); /* before MPI_Finalize: it frees MPI communicators */
  MPI_Finalize();
  return any_bad != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
