// osu_bw-style windowed bandwidth from rank 0 to rank 1: raw bytes (MPI) beside gradwire's
// encoded messages (bench/osu/p2p.cpp; gw_bw -h lists the flags).
#include "p2p.hpp"

int main(int argc, char** argv) { return gwbench::run_p2p(argc, argv, gwbench::P2P::Bandwidth); }
