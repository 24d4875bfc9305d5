/* test_registry.c: the variant table (src/registry.c) is whole for this build's configuration.
 * CMake passes what was configured (tests/CMakeLists.txt): APL_EXPECT_CUDA (GPU variants built)
 * and APL_EXPECT_THRUST_CPU (CCCL headers found, thrust_sorted_cpu built). It fails when
 *  - a CPU row has no fn, unless it is the Thrust/CPP row and the headers were not found;
 *  - a GPU row lacks fn or device_fn in a CUDA build, or has either without one;
 *  - a CPU row has a device_fn;
 *  - two rows share a name, or apl_variant_find does not return the row of its name;
 *  - a row has no name, no backend, no description, no losses bit or a bit beyond the losses.
 * A variant file added to kernels/ without its row, or a row whose function was left out of the
 * build, shows up here (or at link time). */
#include "aploss/aploss.h"
#include "check.h"

#include <string.h>

#ifndef APL_EXPECT_CUDA
#error "tests/CMakeLists.txt passes APL_EXPECT_CUDA (0 or 1)"
#endif
#ifndef APL_EXPECT_THRUST_CPU
#error "tests/CMakeLists.txt passes APL_EXPECT_THRUST_CPU (0 or 1)"
#endif

int main(void)
{
    size_t count;
    const apl_variant *v = apl_variants(&count);
    CHECK(v != NULL && count > 0, "the table is empty");
    size_t cpu = 0, gpu = 0;
    for (size_t i = 0; v && i < count; i++) {
        const apl_variant *r = &v[i];
        const char *name = r->name ? r->name : "(row without a name)";
        CHECK(r->name && r->name[0], "row %zu has no name", i);
        CHECK(r->backend && r->backend[0], "%s: no backend", name);
        CHECK(r->description && r->description[0], "%s: no description", name);
        CHECK(r->losses != 0, "%s: no losses bit", name);
        CHECK((r->losses >> APL_LOSS_COUNT) == 0, "%s: losses 0x%x has a bit beyond the %d losses",
              name, r->losses, (int)APL_LOSS_COUNT);
        for (size_t k = 0; k < i; k++)
            CHECK(!r->name || !v[k].name || strcmp(r->name, v[k].name) != 0,
                  "rows %zu and %zu share the name %s", k, i, name);
        if (r->name)
            CHECK(apl_variant_find(r->name) == r, "apl_variant_find(\"%s\") is not row %zu", name,
                  i);
        if (r->device == APL_CPU) {
            cpu++;
            const int optional = r->backend && strcmp(r->backend, "Thrust/CPP") == 0 &&
                                 !APL_EXPECT_THRUST_CPU;
            CHECK(r->fn != NULL || optional,
                  "%s: CPU row without an implementation (fn NULL) in this build", name);
            CHECK(r->device_fn == NULL, "%s: CPU row with a device_fn", name);
        } else {
            gpu++;
            CHECK(r->device == APL_GPU, "%s: device %d", name, (int)r->device);
            if (APL_EXPECT_CUDA)
                CHECK(r->fn != NULL && r->device_fn != NULL,
                      "%s: GPU row in a CUDA build without %s", name,
                      r->fn ? "device_fn" : "fn");
            else
                CHECK(r->fn == NULL && r->device_fn == NULL,
                      "%s: GPU row with an implementation in a build without CUDA", name);
        }
        printf("  %-20s %s %-12s losses 0x%x fn %s device_fn %s\n", name,
               r->device == APL_GPU ? "GPU" : "CPU", r->backend ? r->backend : "-", r->losses,
               r->fn ? "yes" : "no", r->device_fn ? "yes" : "no");
    }
    printf("%zu rows (%zu CPU, %zu GPU); configured: CUDA %d, Thrust CPU %d\n", count, cpu, gpu,
           APL_EXPECT_CUDA, APL_EXPECT_THRUST_CPU);
    CHECK(apl_variant_find("no such variant") == NULL && apl_variant_find(NULL) == NULL,
          "apl_variant_find finds a name not in the table");
    return check_report("test_registry");
}
