// osu_latency-style ping-pong between ranks 0 and 1: raw bytes (MPI) beside gradwire's
// encoded messages (bench/osu/p2p.cpp; gw_latency -h lists the flags).
#include "p2p.hpp"

int main(int argc, char** argv) { return gwbench::run_p2p(argc, argv, gwbench::P2P::Latency); }
