// osu_allreduce-style sweep: gradwire's allreduce beside the plain engine's, timed in one run
// (bench/osu/collective.cpp; gw_allreduce -h lists the flags).
#include "collective.hpp"

int main(int argc, char** argv) { return gwbench::run_collective(argc, argv, gwbench::Coll::Allreduce); }
