# install.cmake: `cmake --install build --prefix DIR` puts the public headers, libaploss.a and
# libaploss.so (and the harness libraries), an exported CMake package (find_package(aploss)
# gives aploss::aploss, the shared library, and aploss::aploss_static) and a pkg-config file
# (aploss.pc) in place.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# C programs that link the static library need the C++ runtime of its Thrust objects.
if(TARGET aploss AND (APL_HAVE_CUDA OR APL_CCCL_INCLUDE_DIR))
  target_link_libraries(aploss PUBLIC stdc++)
endif()
set_target_properties(aploss_shared PROPERTIES EXPORT_NAME aploss)
set_target_properties(aploss PROPERTIES EXPORT_NAME aploss_static)
set_target_properties(aploss_harness_shared PROPERTIES EXPORT_NAME harness)
set_target_properties(aploss_harness PROPERTIES EXPORT_NAME harness_static)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/aploss DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS aploss aploss_shared aploss_harness aploss_harness_shared
        EXPORT aplossTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT aplossTargets NAMESPACE aploss::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/aploss)

set(APL_CONFIG_FIND_DEPS "")
if(OpenMP_C_FOUND)
  string(APPEND APL_CONFIG_FIND_DEPS "find_dependency(OpenMP COMPONENTS C)\n")
endif()
if(APL_HAVE_CUDA)
  string(APPEND APL_CONFIG_FIND_DEPS "find_dependency(CUDAToolkit)\n")
endif()
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/aplossConfig.cmake.in [[
@PACKAGE_INIT@
include(CMakeFindDependencyMacro)
@APL_CONFIG_FIND_DEPS@
include("${CMAKE_CURRENT_LIST_DIR}/aplossTargets.cmake")
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

# pkg-config: the shared library by default; --static adds what libaploss.a needs.
set(APL_PC_LIBS_PRIVATE "-lm")
if(OpenMP_C_FOUND)
  string(APPEND APL_PC_LIBS_PRIVATE " -fopenmp")
endif()
if(APL_HAVE_CUDA OR APL_CCCL_INCLUDE_DIR)
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
# The prefix is known only at install time: configure the file then.
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
