// osu_allgather-style sweep: gradwire's allgather beside the plain engine's, timed in one run
// (bench/osu/collective.cpp; gw_allgather -h lists the flags).
#include "collective.hpp"

int main(int argc, char** argv) { return gwbench::run_collective(argc, argv, gwbench::Coll::Allgather); }
