# install.cmake: `cmake --install build --prefix DIR` puts the public headers, libaploss.so and
# libaploss.a (and the harness libraries), an exported CMake package and a pkg-config file
# (aploss.pc) in place. tests/install/ checks both ways of using them from outside.
#
# find_package(aploss) gives
#   aploss::aploss          libaploss.so: needs nothing else (OpenMP and, in a CUDA build, the
#                           static CUDA runtime are private to it)
#   aploss::harness         libaploss_harness.so (aploss/harness.h)
#   aploss::aploss_static   libaploss.a, and aploss::harness_static: their objects need libm,
#   aploss::harness_static  OpenMP, the C++ runtime (Thrust) and the CUDA runtime at link time,
#                           so the package defines them only where it finds those too
#                           (find_package(aploss COMPONENTS static) makes that required).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# What libaploss.a's objects need at link time, besides its own objects. OpenMP is looked up
# again here: src/ found it, but a find_package result lives in the directory that made it.
find_package(OpenMP QUIET COMPONENTS C)
get_target_property(_apl_link_lang aploss LINKER_LANGUAGE) # CXX: Thrust or CUDA objects inside
set(_apl_needs_cxx OFF)
if(_apl_link_lang STREQUAL "CXX")
  set(_apl_needs_cxx ON)
  # C programs (CMake or not) that link the static library need the C++ runtime of its Thrust
  # objects.
  target_link_libraries(aploss PRIVATE stdc++)
endif()
set_target_properties(aploss_shared PROPERTIES EXPORT_NAME aploss)
set_target_properties(aploss PROPERTIES EXPORT_NAME aploss_static)
set_target_properties(aploss_harness_shared PROPERTIES EXPORT_NAME harness
                                                       INSTALL_RPATH "\$ORIGIN")
set_target_properties(aploss_harness PROPERTIES EXPORT_NAME harness_static)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/aploss DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# Two export sets, so that a user of the shared library never has to find OpenMP or CUDA.
install(TARGETS aploss_shared aploss_harness_shared EXPORT aplossTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS aploss aploss_harness EXPORT aplossStaticTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT aplossTargets NAMESPACE aploss:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/aploss)
install(EXPORT aplossStaticTargets NAMESPACE aploss::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/aploss)

# The static targets' dependencies, looked up quietly by the package: a missing one leaves the
# static targets out (or fails find_package when COMPONENTS static was asked for).
set(APL_CONFIG_STATIC_DEPS "")
set(APL_STATIC_NEEDS "libm")
if(OpenMP_C_FOUND)
  string(APPEND APL_CONFIG_STATIC_DEPS [[
if(NOT TARGET OpenMP::OpenMP_C)
  find_package(OpenMP QUIET COMPONENTS C)
endif()
if(NOT TARGET OpenMP::OpenMP_C)
  set(aploss_static_FOUND FALSE)
  string(APPEND _aploss_static_missing " OpenMP (C)")
endif()
]])
  string(APPEND APL_STATIC_NEEDS ", OpenMP")
endif()
if(APL_HAVE_CUDA)
  string(APPEND APL_CONFIG_STATIC_DEPS [[
if(NOT TARGET CUDA::cudart_static)
  find_package(CUDAToolkit QUIET)
endif()
if(NOT TARGET CUDA::cudart_static)
  set(aploss_static_FOUND FALSE)
  string(APPEND _aploss_static_missing " CUDAToolkit")
endif()
]])
  string(APPEND APL_STATIC_NEEDS ", the CUDA runtime (CUDA::cudart_static)")
endif()
if(_apl_needs_cxx)
  string(APPEND APL_STATIC_NEEDS ", the C++ runtime")
endif()
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/aplossConfig.cmake.in [[
@PACKAGE_INIT@
# aploss::aploss (libaploss.so) and aploss::harness: nothing else to find.
include("${CMAKE_CURRENT_LIST_DIR}/aplossTargets.cmake")
set(aploss_shared_FOUND TRUE)

# aploss::aploss_static and aploss::harness_static (libaploss.a) need at link time:
# @APL_STATIC_NEEDS@.
set(aploss_static_FOUND TRUE)
set(_aploss_static_missing "")
@APL_CONFIG_STATIC_DEPS@
if(aploss_static_FOUND)
  include("${CMAKE_CURRENT_LIST_DIR}/aplossStaticTargets.cmake")
elseif("static" IN_LIST aploss_FIND_COMPONENTS)
  set(aploss_NOT_FOUND_MESSAGE
      "aploss::aploss_static needs what libaploss.a was built with; not found:${_aploss_static_missing}")
endif()
unset(_aploss_static_missing)
check_required_components(aploss)
]])
configure_package_config_file(${CMAKE_CURRENT_BINARY_DIR}/aplossConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/aplossConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/aploss)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/aplossConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/aplossConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/aplossConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/aploss)

# pkg-config: `pkg-config --libs aploss` links libaploss.so; `--static` adds what libaploss.a
# needs (Libs.private). The shared library's own dependencies are recorded in it (DT_NEEDED).
set(APL_PC_LIBS_PRIVATE "-lm")
if(OpenMP_C_FOUND)
  string(APPEND APL_PC_LIBS_PRIVATE " ${OpenMP_C_FLAGS}")
endif()
if(_apl_needs_cxx)
  string(APPEND APL_PC_LIBS_PRIVATE " -lstdc++")
endif()
if(APL_HAVE_CUDA)
  string(APPEND APL_PC_LIBS_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -ldl -lrt -lpthread")
endif()
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/aploss.pc.in [[
prefix=@CMAKE_INSTALL_PREFIX@
libdir=${prefix}/@CMAKE_INSTALL_LIBDIR@
includedir=${prefix}/@CMAKE_INSTALL_INCLUDEDIR@

Name: aploss
Description: Exact, fast AP-Loss family cores (AP-Loss, aLRP Loss, Parameterized AP Loss) on CPU and GPU
Version: @PROJECT_VERSION@
Libs: -L${libdir} -laploss
Libs.private: @APL_PC_LIBS_PRIVATE@
Cflags: -I${includedir}
]])
# The prefix is known only at install time (cmake --install --prefix): configure the file then.
install(CODE "
  set(CMAKE_INSTALL_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(CMAKE_INSTALL_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(CMAKE_INSTALL_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  set(APL_PC_LIBS_PRIVATE \"${APL_PC_LIBS_PRIVATE}\")
  configure_file(\"${CMAKE_CURRENT_BINARY_DIR}/aploss.pc.in\"
                 \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/aploss.pc\" @ONLY)
  message(STATUS \"Installing: \${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/aploss.pc\")
")
