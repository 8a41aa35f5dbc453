# Installs the libraries, public headers, a CMake package (find_package(gradwire), targets
# gradwire::codec and gradwire::gradwire) and a pkg-config file (gradwire.pc). Everything
# is relocatable: `cmake --install BUILD --prefix ANYWHERE` works (scripts/check_install.sh).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(GRADWIRE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/gradwire" CACHE STRING
    "Where gradwireConfig.cmake is installed, relative to the prefix")

set(_gw_targets gradwire_codec)
if(GRADWIRE_HAVE_MPI)
  list(APPEND _gw_targets gradwire)
endif()
if(GRADWIRE_HAVE_CUDA)
  list(APPEND _gw_targets gradwire_codec_cuda)  # libgradwire's device plans run its kernels
endif()
# $ORIGIN: libgradwire finds libgradwire_codec next to itself wherever the prefix moves,
# even when the executable's RUNPATH (which does not apply to transitive deps) misses it.
set_target_properties(${_gw_targets} PROPERTIES INSTALL_RPATH "$ORIGIN")

install(TARGETS ${_gw_targets} EXPORT gradwireTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  # Also here, not only in the targets' $<INSTALL_INTERFACE:...>: those are evaluated where
  # the targets are made, before this file includes GNUInstallDirs on a fresh configure.
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Public headers are exactly include/gradwire/*.{h,hpp}; internal ones live in src/.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/gradwire"
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")
install(FILES "${PROJECT_BINARY_DIR}/include/gradwire/config.hpp"
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/gradwire)

install(EXPORT gradwireTargets NAMESPACE gradwire:: DESTINATION ${GRADWIRE_INSTALL_CMAKEDIR})
if(GRADWIRE_HAVE_NCCL)
  install(FILES "${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake"
    DESTINATION ${GRADWIRE_INSTALL_CMAKEDIR})
endif()

configure_package_config_file(cmake/gradwireConfig.cmake.in
  "${PROJECT_BINARY_DIR}/gradwireConfig.cmake"
  INSTALL_DESTINATION ${GRADWIRE_INSTALL_CMAKEDIR})
# 0.x: a minor release may break the API, so only the same minor version is compatible.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/gradwireConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/gradwireConfig.cmake"
              "${PROJECT_BINARY_DIR}/gradwireConfigVersion.cmake"
  DESTINATION ${GRADWIRE_INSTALL_CMAKEDIR})

# pkg-config. The prefix is found from the .pc file's own place (${pcfiledir}), so the
# file stays right after `cmake --install --prefix`. MPI comes in through its own .pc
# (Requires:) when one describes the same libmpi the build used, else as a link line.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(GW_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(GW_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH _gw_up "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  string(REGEX REPLACE "/$" "" _gw_up "${_gw_up}")
  set(GW_PC_PREFIX "\${pcfiledir}/${_gw_up}")
  set(GW_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(GW_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(GW_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()

set(GW_PC_REQUIRES "")
set(GW_PC_MPI_LIBS "")
set(GW_PC_MPI_CFLAGS "")
set(GW_PC_LIBS "-lgradwire_codec")
if(GRADWIRE_HAVE_MPI)
  set(GW_PC_LIBS "-lgradwire -lgradwire_codec")
  # As gradwire::gradwire says in CMake: C++ users need only MPI's C API, and without these
  # <mpi.h> drags in the C++ bindings and a dependency on libmpi_cxx.
  set(GW_PC_MPI_CFLAGS " -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1")
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    foreach(_gw_mod ompi-c mpich mpi-c)
      pkg_check_modules(_GW_PCMPI QUIET ${_gw_mod})
      if(_GW_PCMPI_FOUND AND "${_GW_PCMPI_LINK_LIBRARIES}" MATCHES "libmpi")
        list(FIND _GW_PCMPI_LINK_LIBRARIES "${MPI_mpi_LIBRARY}" _gw_same)
        if(NOT _gw_same EQUAL -1 OR NOT MPI_mpi_LIBRARY)
          set(GW_PC_REQUIRES "${_gw_mod}")
          break()
        endif()
      endif()
    endforeach()
  endif()
  if(NOT GW_PC_REQUIRES)
    foreach(_gw_lib IN LISTS MPI_C_LIBRARIES)
      string(APPEND GW_PC_MPI_LIBS " ${_gw_lib}")
    endforeach()
    foreach(_gw_inc IN LISTS MPI_C_INCLUDE_DIRS)  # after the -D flags above
      string(APPEND GW_PC_MPI_CFLAGS " -I${_gw_inc}")
    endforeach()
  endif()
endif()
configure_file(cmake/gradwire.pc.in "${PROJECT_BINARY_DIR}/gradwire.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/gradwire.pc"
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
