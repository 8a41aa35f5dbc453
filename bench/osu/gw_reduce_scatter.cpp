// osu_reduce_scatter-style sweep: gradwire's reduce_scatter beside the plain engine's, timed in one run
// (bench/osu/collective.cpp; gw_reduce_scatter -h lists the flags).
#include "collective.hpp"

int main(int argc, char** argv) { return gwbench::run_collective(argc, argv, gwbench::Coll::ReduceScatter); }
