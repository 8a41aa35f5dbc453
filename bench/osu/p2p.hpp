// osu_latency / osu_bw-style point-to-point sweeps between ranks 0 and 1 (other ranks idle;
// a single rank talks to itself). gradwire has no point-to-point API: its path is the message
// as gradwire's collectives put it on the wire, a codec's encoding (docs/wire-format.md) sent
// on gradwire's private communicator and decoded on arrival; with --codec none it is the raw
// bytes on that communicator. The baseline is MPI_Send/MPI_Recv of the raw bytes.
#pragma once

namespace gwbench {

enum class P2P { Latency, Bandwidth };

int run_p2p(int argc, char** argv, P2P kind);

}  // namespace gwbench
