# Sourced by the build scripts: compile through ccache when it is installed (scripts/setup.sh
# installs it), so that a rebuild of an unchanged source, in this clone or in another one
# anywhere on the machine (CI clones afresh into another folder), is a cache hit.
#   CCACHE_BASEDIR: absolute paths under the clone are hashed relative to the build folder,
#     so two clones in different folders share entries;
#   CCACHE_NOHASHDIR: the build folder's path is not hashed either (the builds with debug
#     information would otherwise miss across clones).
# Both are set here rather than left to the user's ccache.conf. The cache folder and its size
# are ccache's (and the user's) choice. gw_launchers: the CMake arguments of a configure (a
# tree configured before without them takes them too); the same in the environment reach the
# configures that tests run (install checks, examples), which CMake reads on their first run.
# Needs $root, the clone's top folder.
gw_launchers=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache \
         CMAKE_CUDA_COMPILER_LAUNCHER=ccache
  gw_launchers=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
                -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
