/* gradwire C ABI: the communicator and its dense collectives, for C, Fortran (through
 * MPI_Fint) and foreign-function callers. Compiles as C11 and as C++.
 *
 * Conventions (docs/c-abi.md):
 *  - Every function returns GW_SUCCESS (0) or a gw_status_t error code; the message of
 *    the last failed call on the calling thread is gw_last_error().
 *  - No C++ exception ever crosses this boundary.
 *  - NULL handles and NULL out-pointers are GW_INVALID_ARGUMENT.
 *  - Handles are owned by the caller: each gw_comm_t ends with gw_comm_destroy, each
 *    gw_request_t with gw_request_free (both accept and reset a NULL-or-valid handle).
 *  - Collectives, create, split, finalize and destroy are collective over the
 *    communicator's ranks, like their MPI counterparts.
 */
#ifndef GRADWIRE_GRADWIRE_H
#define GRADWIRE_GRADWIRE_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values 1..10 equal gradwire::ErrorCode (include/gradwire/error.hpp). */
typedef enum gw_status {
  GW_SUCCESS = 0,
  GW_INVALID_ARGUMENT = 1, /* NULL handle/buffer, bad count, dtype, op or root */
  GW_UNSUPPORTED = 2,      /* a dtype/op pair that is not implemented */
  GW_TIMEOUT = 3,          /* a wait or the rendezvous passed its deadline */
  GW_FINALIZED = 4,        /* use of a communicator after gw_comm_finalize */
  GW_MISMATCH = 5,         /* ranks disagree (count, dtype) in checked mode */
  GW_MPI_ERROR = 6,
  GW_NCCL_ERROR = 7,
  GW_CUDA_ERROR = 8,
  GW_WIRE_FORMAT = 9,      /* a malformed or truncated compressed message */
  GW_INTERNAL = 10,        /* a bug in gradwire */
  GW_OUT_OF_MEMORY = 11,   /* host allocation failed (C ABI only) */
  GW_PEER_FAILED = 12,     /* a peer died (GRADWIRE_ON_FAILURE=shrink): gw_comm_shrink */
  GW_STATUS_MAX_ENUM_ = 0x7fffffff
} gw_status_t;

/* The *_MAX_ENUM_ members keep each enum int-sized and make every non-negative int a valid
 * value of it in C++ (the *_MIN_ENUM_ members every negative one too, for dtype and op), so
 * the library can receive and reject any value a C caller passes. */

/* Values equal gradwire::DType; they never change. */
typedef enum gw_dtype {
  GW_FLOAT32 = 0,
  GW_FLOAT64 = 1,
  GW_FLOAT16 = 2,
  GW_BFLOAT16 = 3,
  GW_INT32 = 4,
  GW_INT64 = 5,
  GW_UINT8 = 6,
  GW_DTYPE_MAX_ENUM_ = 0x7fffffff,
  GW_DTYPE_MIN_ENUM_ = -0x7fffffff - 1
} gw_dtype_t;

/* Values equal gradwire::ReduceOp. GW_AVG on integers truncates toward zero. */
typedef enum gw_op {
  GW_SUM = 0,
  GW_AVG = 1,
  GW_MIN = 2,
  GW_MAX = 3,
  GW_PROD = 4,
  GW_OP_MAX_ENUM_ = 0x7fffffff,
  GW_OP_MIN_ENUM_ = -0x7fffffff - 1
} gw_op_t;

/* What a wait does past its deadline (GRADWIRE_TIMEOUT seconds, default 300). */
typedef enum gw_on_timeout {
  GW_ON_TIMEOUT_ABORT = 0, /* print the error and abort the job (default) */
  GW_ON_TIMEOUT_RETURN = 1, /* return GW_TIMEOUT; the request stays pending */
  GW_ON_TIMEOUT_MAX_ENUM_ = 0x7fffffff
} gw_on_timeout_t;

typedef struct gw_comm_s* gw_comm_t;       /* a gradwire communicator */
typedef struct gw_request_s* gw_request_t; /* a collective in flight */
typedef struct gw_plan_s* gw_plan_t;       /* a persistent compressed collective */

/* ---- errors and version (these never fail and are thread-safe) ---- */

/* Message of the last failed call on this thread ("" if none). Valid until the next
 * failed call on this thread; successful calls leave it unchanged. */
const char* gw_last_error(void);
/* Static text naming a status ("unknown status" outside the enum). */
const char* gw_status_string(gw_status_t status);
/* Version of the library actually linked (not of this header). */
gw_status_t gw_version(int* major, int* minor, int* patch);
const char* gw_version_string(void);

/* ---- communicators ---- */

/* Collective over comm: duplicates it (gradwire never uses the caller's communicator
 * afterwards) and meets the peers. *out is NULL on failure. */
gw_status_t gw_comm_create(MPI_Comm comm, gw_comm_t* out);
/* gw_comm_create that also records the timeline (docs/timeline.md) of this process into
 * timeline_path (a Chrome trace, written by rank 0 at gw_comm_finalize/gw_comm_destroy), as
 * GRADWIRE_TIMELINE=timeline_path would (a process already recording one records into it). */
gw_status_t gw_comm_create_timeline(MPI_Comm comm, const char* timeline_path, gw_comm_t* out);
/* The same from a Fortran handle (MPI_Comm_c2f's value, an INTEGER in Fortran). */
gw_status_t gw_comm_create_f(MPI_Fint comm, gw_comm_t* out);
/* Ranks with the same color form a new communicator, ordered by key (MPI_Comm_split). */
gw_status_t gw_comm_split(gw_comm_t comm, int color, int key, gw_comm_t* out);
/* Releases MPI/NCCL resources; later calls on comm return GW_FINALIZED. The handle
 * itself stays valid until gw_comm_destroy. */
gw_status_t gw_comm_finalize(gw_comm_t comm);
/* Finalizes if needed, frees the handle and sets *comm to NULL. *comm == NULL is a no-op. */
gw_status_t gw_comm_destroy(gw_comm_t* comm);

gw_status_t gw_comm_rank(gw_comm_t comm, int* rank);
gw_status_t gw_comm_size(gw_comm_t comm, int* size);
gw_status_t gw_comm_local_rank(gw_comm_t comm, int* local_rank); /* rank on this node */
gw_status_t gw_comm_local_size(gw_comm_t comm, int* local_size);
gw_status_t gw_comm_node_count(gw_comm_t comm, int* node_count);
/* Wall time the create/split spent meeting its peers. */
gw_status_t gw_comm_rendezvous_seconds(gw_comm_t comm, double* seconds);
gw_status_t gw_comm_set_on_timeout(gw_comm_t comm, gw_on_timeout_t policy);
/* After GW_PEER_FAILED (GRADWIRE_ON_FAILURE=shrink, ULFM builds): collective over the
 * survivors; *out is a new communicator of them, the rendezvous redone. comm stays failed
 * (destroy it). GW_UNSUPPORTED in builds without ULFM. */
gw_status_t gw_comm_shrink(gw_comm_t comm, gw_comm_t* out);

/* ---- collectives (host or device buffers; the library asks CUDA which) ----
 * recv may equal send (in place). Blocking forms return when the result is in place;
 * the i-forms return a request in *req that must be waited on (or tested until done)
 * before the buffers are touched, and freed with gw_request_free. */

gw_status_t gw_allreduce(gw_comm_t comm, const void* send, void* recv, size_t count,
                         gw_dtype_t dtype, gw_op_t op);
gw_status_t gw_iallreduce(gw_comm_t comm, const void* send, void* recv, size_t count,
                          gw_dtype_t dtype, gw_op_t op, gw_request_t* req);
/* recv holds size*count elements, rank r's block at r*count. */
gw_status_t gw_allgather(gw_comm_t comm, const void* send, void* recv, size_t count,
                         gw_dtype_t dtype);
gw_status_t gw_iallgather(gw_comm_t comm, const void* send, void* recv, size_t count,
                          gw_dtype_t dtype, gw_request_t* req);
/* send holds size*recv_count elements; rank r receives the reduction of block r. */
gw_status_t gw_reduce_scatter(gw_comm_t comm, const void* send, void* recv,
                              size_t recv_count, gw_dtype_t dtype, gw_op_t op);
gw_status_t gw_ireduce_scatter(gw_comm_t comm, const void* send, void* recv,
                               size_t recv_count, gw_dtype_t dtype, gw_op_t op,
                               gw_request_t* req);
gw_status_t gw_broadcast(gw_comm_t comm, void* buf, size_t count, gw_dtype_t dtype,
                         int root);
gw_status_t gw_ibroadcast(gw_comm_t comm, void* buf, size_t count, gw_dtype_t dtype,
                          int root, gw_request_t* req);

/* ---- requests ---- */

/* Blocks until done or the deadline passes (then as gw_comm_set_on_timeout says). */
gw_status_t gw_request_wait(gw_request_t req);
/* *done = 1 once complete and the result is in place, else 0. */
gw_status_t gw_request_test(gw_request_t req, int* done);
/* Frees the handle and sets *req to NULL; *req == NULL is a no-op. Freeing a pending
 * request first waits for it (aborting the job past the deadline): buffers stay in use
 * until the collective ends. */
gw_status_t gw_request_free(gw_request_t* req);

/* ---- plans: persistent compressed collectives (docs/compressed-collectives.md) ---- */

typedef enum gw_plan_collective {
  GW_PLAN_ALLREDUCE = 0,
  GW_PLAN_ALLGATHER = 1,
  /* send: count * size elements; recv: this rank's block of count (float32 only) */
  GW_PLAN_REDUCE_SCATTER = 2,
  GW_PLAN_COLLECTIVE_MAX_ENUM_ = 0x7fffffff
} gw_plan_collective_t;

/* Where a plan's buffers live (gw_plan_config_t.memory). */
typedef enum gw_memory {
  GW_MEMORY_HOST = 0,   /* the default */
  GW_MEMORY_DEVICE = 1, /* CUDA device memory: gw_plan_run_stream / gw_plan_start_stream */
  GW_MEMORY_MAX_ENUM_ = 0x7fffffff
} gw_memory_t;

typedef struct gw_plan_config {
  gw_plan_collective_t collective; /* default GW_PLAN_ALLREDUCE */
  size_t count;                    /* allreduce: elements; allgather, reduce-scatter: per rank */
  gw_dtype_t dtype;                /* GW_FLOAT32 (default), GW_FLOAT16, GW_BFLOAT16 */
  gw_op_t op;                      /* GW_SUM (default) or GW_AVG */
  const char* codec;               /* codec spec, e.g. "q4"; NULL means "none" */
  const char* algorithm;           /* "auto" (NULL), "dense", "sra", "shared-grid", ... */
  int error_feedback;              /* default 1 */
  uint64_t seed;                   /* default 0 */
  /* DGC options (docs/compressed-collectives.md, "DGC options"); all off by default. */
  float momentum;          /* > 0: the plan keeps the velocity (momentum correction); 0 */
  int momentum_masking;    /* sparse codecs: zero the velocity of sent elements; 1 */
  float clip_norm;         /* > 0: local gradient clipping to this L2 norm; 0 */
  uint64_t warmup_steps;   /* top-k density warm-up steps; 0 */
  double warmup_density;   /* density at step 0 of the warm-up; 0.25 */
  /* PowerSGD (algorithm "powersgd", codec "none"). */
  uint32_t powersgd_rank;  /* 4 */
  size_t shape_count;      /* matrices back to back from element 0; 0 */
  const size_t* shapes;    /* 2 * shape_count values: rows, cols of each; NULL */
  /* 1: SRA's owned shards sized by each rank's measured codec speed (uneven ranks); 0 */
  int balance_shards;
  /* Appended for the Python binding: GW_MEMORY_HOST (default) or GW_MEMORY_DEVICE. */
  gw_memory_t memory;
} gw_plan_config_t;

typedef struct gw_plan_stats {
  const char* algorithm; /* the last run's; valid until the plan's next run or destruction */
  size_t logical_bytes, wire_bytes;
  double encode_s, transfer_s, decode_s, total_s; /* 0 for runs left untimed (plan.hpp) */
  /* "auto" plans (PlanStats in gradwire/plan.hpp): why `algorithm` runs (valid as
   * `algorithm`; "" where auto did not decide), the switches since creation, and each
   * candidate's measured time (agreed over ranks; 0 where it has not run). */
  const char* decision;
  int switches;
  double measured_dense_s, measured_compressed_s;
} gw_plan_stats_t;

/* Fills *config with the defaults above. */
gw_status_t gw_plan_config_init(gw_plan_config_t* config);
/* Collective: ranks that disagree on the configuration all get GW_MISMATCH. The plan must be
 * destroyed before its communicator. */
gw_status_t gw_plan_create(gw_comm_t comm, const gw_plan_config_t* config, gw_plan_t* out);
/* Frees the plan (finishing a run in flight) and sets *plan to NULL; NULL is a no-op. */
gw_status_t gw_plan_destroy(gw_plan_t* plan);
gw_status_t gw_plan_run(gw_plan_t plan, const void* send, void* recv);
/* Non-blocking; *req ends with gw_request_free. */
gw_status_t gw_plan_start(gw_plan_t plan, const void* send, void* recv, gw_request_t* req);
gw_status_t gw_plan_stats(gw_plan_t plan, gw_plan_stats_t* stats);
/* Names this plan's runs on the timeline (docs/timeline.md), e.g. "bucket 3: fc.weight ..
 * conv1.bias"; copied, local, no communication; does nothing when no timeline records. */
gw_status_t gw_plan_set_label(gw_plan_t plan, const char* label);
gw_status_t gw_plan_step(gw_plan_t plan, uint64_t* step);
gw_status_t gw_plan_reset_residual(gw_plan_t plan);
/* Collective; the file is keyed by global element, loadable at another number of ranks. */
gw_status_t gw_plan_save_residual(gw_plan_t plan, const char* path);
gw_status_t gw_plan_load_residual(gw_plan_t plan, const char* path);
/* Checkpoints, collective: the plan's whole state (every rank's residual, DGC velocity,
 * PowerSGD's warm-start Q, the step); rank 0 writes and reads path. Loaded on as many ranks,
 * the next run is bit-identical to the uninterrupted one; on another number of ranks the
 * residual and velocity totals are shared out by global element. A file of another plan
 * configuration or version, or a corrupted one, is GW_INVALID_ARGUMENT on every rank. */
gw_status_t gw_plan_save_state(gw_plan_t plan, const char* path);
gw_status_t gw_plan_load_state(gw_plan_t plan, const char* path);
/* Collective over plan's communicator: takes over from's error-feedback residual by global
 * element range (typically from a plan on the communicator that gw_comm_shrink replaced). */
gw_status_t gw_plan_carry_residual(gw_plan_t plan, gw_plan_t from);
/* One-shot compressed allreduce without error feedback. algorithm NULL means "auto". */
gw_status_t gw_allreduce_compressed(gw_comm_t comm, const void* send, void* recv, size_t count,
                                    gw_dtype_t dtype, gw_op_t op, const char* codec,
                                    const char* algorithm);
/* The cost model's predictions for an "auto" plan (seconds; all 0 where the model did not
 * run), beside the measured total_s of gw_plan_stats. Any out-pointer may be NULL.
 * A separate call so that gw_plan_stats_t keeps its layout. */
gw_status_t gw_plan_predicted(gw_plan_t plan, double* predicted_s, double* dense_s,
                              double* compressed_s);

/* ---- elastic membership (ULFM builds; docs/fault-tolerance.md, "Growing back") ----
 * Collective, each step bounded by GRADWIRE_INIT_TIMEOUT and its outcome the same on every
 * rank. GW_UNSUPPORTED without ULFM. step: where the caller is; see gw_comm_resume_step. */
/* After GW_PEER_FAILED under GRADWIRE_ON_FAILURE=respawn: shrink, start one replacement per
 * lost rank (this program and arguments), merge in the original numbering. If that fails,
 * *out is the survivors' communicator on every rank (compare gw_comm_size). */
gw_status_t gw_comm_respawn(gw_comm_t comm, uint64_t step, gw_comm_t* out);
/* At a step boundary, the same n on every rank: start n more processes (ranks size..). On an
 * agreed failure *out is a communicator of the same ranks as comm. */
gw_status_t gw_comm_grow(gw_comm_t comm, int n, uint64_t step, gw_comm_t* out);
/* 1 in a process that gw_comm_respawn/gw_comm_grow started (gw_comm_create joined the job). */
gw_status_t gw_comm_joined(gw_comm_t comm, int* joined);
/* The agreed (largest) step of the last membership change; 0 without one. */
gw_status_t gw_comm_resume_step(gw_comm_t comm, uint64_t* step);
typedef struct gw_state_buffer {
  const char* name; /* must match on every rank, with count and dtype */
  void* data;       /* host memory */
  size_t count;
  gw_dtype_t dtype;
} gw_state_buffer_t;
/* Collective: every rank receives the buffers of the source rank (the lowest former member
 * at the resume step). GW_MISMATCH on every rank if the lists differ. */
gw_status_t gw_comm_share_state(gw_comm_t comm, const gw_state_buffer_t* buffers, size_t n);
/* The joiner's side of gw_plan_carry_residual (it has no old plan): collective with it. */
gw_status_t gw_plan_join_residual(gw_plan_t plan);

/* ---- for bindings from other languages (Python's gradwire package; docs/c-abi.md,
 * "Bindings") ---- */

/* MPI thread levels, named here because MPI's own constants are macros a foreign caller
 * cannot read. */
typedef enum gw_thread_level {
  GW_THREAD_SINGLE = 0,
  GW_THREAD_FUNNELED = 1,
  GW_THREAD_SERIALIZED = 2,
  GW_THREAD_MULTIPLE = 3,
  GW_THREAD_LEVEL_MAX_ENUM_ = 0x7fffffff
} gw_thread_level_t;

/* Initializes MPI with MPI_Init_thread(required) unless it is initialized already (by mpi4py,
 * say). *provided: the level MPI gives (asked with MPI_Query_thread where someone else
 * initialized it); *initialized_here: 1 when this call initialized MPI. Either out-pointer
 * may be NULL. GW_MPI_ERROR after MPI_Finalize. */
gw_status_t gw_mpi_init(gw_thread_level_t required, gw_thread_level_t* provided,
                        int* initialized_here);
/* MPI_Finalize if gw_mpi_init initialized MPI and nobody finalized it yet; otherwise nothing
 * (MPI belongs to whoever initialized it). Destroy every communicator first. */
gw_status_t gw_mpi_finalize(void);
/* MPI_COMM_WORLD's Fortran handle, for gw_comm_create_f from a language that cannot name
 * MPI_COMM_WORLD (mpi4py users pass comm.py2f() instead). */
gw_status_t gw_mpi_comm_world_f(MPI_Fint* out);

/* Device-memory plans on cuda_stream (a cudaStream_t; NULL: the default stream): ordered
 * after the work already on the stream, and work enqueued later on it sees the result.
 * gw_plan_run_stream returns once the work is enqueued (plans staged through host memory)
 * or done (plans on the GPU); gw_plan_start_stream is the request form, GPU plans only
 * (GW_UNSUPPORTED for staged ones, whose executor is "host"). Host plans: GW_INVALID_ARGUMENT. */
gw_status_t gw_plan_run_stream(gw_plan_t plan, const void* send, void* recv, void* cuda_stream);
gw_status_t gw_plan_start_stream(gw_plan_t plan, const void* send, void* recv,
                                 void* cuda_stream, gw_request_t* req);
/* Restores gw_plan_step from a checkpoint (stochastic rounding and the density warm-up are
 * keyed by it). Not collective; no run may be in flight. */
gw_status_t gw_plan_set_step(gw_plan_t plan, uint64_t step);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GRADWIRE_GRADWIRE_H */
