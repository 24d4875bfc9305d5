# hardening.cmake (included by tests/CMakeLists.txt): the tests of issue 6. Determinism of every
# CPU variant, allocation failures, the CLI's memory check and atomic output, the opt-in run on
# more than 2^31 elements, and the fuzz targets: replayed over their corpus in every build, and
# built as libFuzzer binaries with -DAPL_FUZZ=ON (clang; tests/hardening.sh does that).

option(APL_FUZZ "Build the libFuzzer targets fuzz_npy and fuzz_inputs (needs clang)" OFF)
find_package(Threads REQUIRED)

# RLIMIT_AS and AddressSanitizer do not mix (ASan reserves terabytes of address space): the
# tests that lower it skip themselves (exit 77) in a build whose flags ask for ASan.
set(_apl_asan OFF)
if("${CMAKE_C_FLAGS} ${CMAKE_C_FLAGS_${CMAKE_BUILD_TYPE}}" MATCHES "-fsanitize=[^ ]*address")
  set(_apl_asan ON)
endif()

apl_test(test_determinism)
set_tests_properties(test_determinism PROPERTIES TIMEOUT 900)

apl_test(test_nomem)
if(_apl_asan)
  target_compile_definitions(test_nomem PRIVATE APL_UNDER_ASAN=1)
endif()

# Opt-in: sorted and pruned on 2^31 + 1e6 elements, about 19 GB of memory, alone (RUN_SERIAL):
#   APL_HUGE_TESTS=1 ctest --test-dir build -L huge
# Skipped (77) otherwise, and where MemAvailable is too small.
apl_test(test_huge)
set_tests_properties(test_huge PROPERTIES TIMEOUT 3600 LABELS huge RUN_SERIAL TRUE)

# The CLI: refusing inputs that cannot fit in memory, and output that is whole or absent.
add_test(NAME cli_hardening
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_hardening.sh $<TARGET_FILE:aploss-cli>
                 ${CMAKE_CURRENT_BINARY_DIR}/cli_hardening_tmp ${_apl_asan})

# ---- fuzz targets ----
foreach(target fuzz_npy fuzz_inputs)
  # The same entry function with a main() that replays files: every seed and every past finding
  # is checked by every build, with or without clang.
  add_executable(${target}_replay fuzz/${target}.c fuzz/replay_main.c)
  target_link_libraries(${target}_replay PRIVATE aploss_harness Threads::Threads)
  add_test(NAME ${target}_replay
           COMMAND ${target}_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${target})
  if(APL_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "APL_FUZZ=ON needs clang (libFuzzer): configure with CC=clang")
    endif()
    add_executable(${target} fuzz/${target}.c)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer)
    target_link_options(${target} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${target} PRIVATE aploss_harness Threads::Threads)
  endif()
endforeach()
