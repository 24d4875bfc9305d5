/* segment_index.h: the one segment index of the segment algorithms (the sorted phases on the
 * CPU, thrust_sorted_cpu/_cuda and cuda_sorted), usable from C, C++ and CUDA device code.
 *
 * The 2|P| breakpoints O[0..S) (ascending, possibly with repeats) cut the logit axis into
 * segments [O_k, O_k+1). Finding an element's segment is the bulk of the per-element work, so a
 * uniform grid of APL_SEG_CELLS_PER_SEGMENT cells per segment spans [O_0, O_S-1]; each cell
 * records the segments holding its first and its last point, most cells hold at most one
 * breakpoint, and the search inside a cell is then zero steps. The result does not depend on how
 * it was found: it is the unique k with O[k] <= x < O[k+1] (the last one when breakpoints
 * repeat; k = S-1 at or past the last), so a vectorised search that checks that condition is
 * bitwise interchangeable with apl_seg_find.
 *
 * The caller owns the memory: apl_seg_cells(S) entries for lo and for hi, filled by
 * apl_seg_cell_lo / apl_seg_cell_hi (one call per cell, so a Thrust transform or a C loop can
 * build the table) or by apl_seg_index_fill. */
#ifndef APL_SEGMENT_INDEX_H
#define APL_SEGMENT_INDEX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define APL_SEG_HD __host__ __device__
#else
#define APL_SEG_HD
#endif

/* About 8 cells per segment: most cells then hold at most one breakpoint. */
#define APL_SEG_CELLS_PER_SEGMENT 8
#define APL_SEG_MIN_CELLS 256

typedef struct apl_seg_index {
    const double *O; /* breakpoints, ascending, S of them */
    uint64_t S;
    double base;     /* O[0] */
    double inv_cell; /* cells per unit logit */
    uint64_t cells;
    const uint32_t *lo, *hi; /* segments holding the first and the last point of each cell */
} apl_seg_index;

static inline APL_SEG_HD uint64_t apl_seg_cells(uint64_t S)
{
    return APL_SEG_CELLS_PER_SEGMENT * S < APL_SEG_MIN_CELLS ? APL_SEG_MIN_CELLS
                                                             : APL_SEG_CELLS_PER_SEGMENT * S;
}

/* First m with O[m] > x. */
static inline APL_SEG_HD uint64_t apl_seg_upper_bound(const double *O, uint64_t S, double x)
{
    uint64_t l = 0, r = S;
    while (l < r) {
        uint64_t m = l + (r - l) / 2;
        if (O[m] <= x)
            l = m + 1;
        else
            r = m;
    }
    return l;
}

/* The cell width of the grid over [O0, Olast] = [O_0, O_S-1] (Olast - O0 >= 2 delta > 0). The
 * two ends are passed by value: on the GPU, O is device memory the host cannot read. */
static inline APL_SEG_HD double apl_seg_cell_width(double O0, double Olast, uint64_t cells)
{
    return (Olast - O0) / (double)cells;
}

/* Table entries of cell c: the segment of its first point and of its last point. */
static inline APL_SEG_HD uint32_t apl_seg_cell_lo(const double *O, uint64_t S, double O0,
                                                  double width, uint64_t c)
{
    return (uint32_t)(apl_seg_upper_bound(O, S, O0 + (double)c * width) - 1);
}
static inline APL_SEG_HD uint32_t apl_seg_cell_hi(const double *O, uint64_t S, double O0,
                                                  double width, uint64_t c)
{
    uint64_t h = apl_seg_upper_bound(O, S, O0 + (double)(c + 1) * width);
    return (uint32_t)(h ? h - 1 : 0);
}

/* The index over O (S >= 1 breakpoints from O0 = O[0] to Olast = O[S-1] > O0) with
 * caller-provided tables of apl_seg_cells(S) entries, filled separately (see above). */
static inline APL_SEG_HD apl_seg_index apl_seg_index_make(const double *O, uint64_t S, double O0,
                                                          double Olast, const uint32_t *lo,
                                                          const uint32_t *hi)
{
    apl_seg_index ix;
    ix.O = O;
    ix.S = S;
    ix.base = O0;
    ix.cells = apl_seg_cells(S);
    ix.inv_cell = (double)ix.cells / (Olast - O0);
    ix.lo = lo;
    ix.hi = hi;
    return ix;
}

/* Host C: make the index over host memory and fill its tables (apl_seg_cells(S) entries each). */
static inline apl_seg_index apl_seg_index_fill(const double *O, uint64_t S, uint32_t *lo,
                                               uint32_t *hi)
{
    const uint64_t cells = apl_seg_cells(S);
    const double width = apl_seg_cell_width(O[0], O[S - 1], cells);
    for (uint64_t c = 0; c < cells; c++) {
        lo[c] = apl_seg_cell_lo(O, S, O[0], width, c);
        hi[c] = apl_seg_cell_hi(O, S, O[0], width, c);
    }
    return apl_seg_index_make(O, S, O[0], O[S - 1], lo, hi);
}

/* The grid cell of x (clamped into the table). */
static inline APL_SEG_HD uint64_t apl_seg_cell(const apl_seg_index *ix, double x)
{
    double c = (x - ix->base) * ix->inv_cell;
    if (!(c > 0.0))
        c = 0.0;
    if (!(c < (double)ix->cells))
        c = (double)(ix->cells - 1);
    return (uint64_t)c;
}

/* Index k of the segment holding x: the last k with O[k] <= x (O[k] <= x < O[k+1], k = S-1 at
 * or past the last breakpoint). Requires x >= O[0]. */
static inline APL_SEG_HD uint64_t apl_seg_find(const apl_seg_index *ix, double x)
{
    const double *O = ix->O;
    uint64_t cell = apl_seg_cell(ix, x);
    /* Last m in [lo, hi] with O[m] <= x, without data-dependent branches: most cells hold one
     * segment and skip the loop, dense cells halve the range with conditional moves. */
    uint64_t k = ix->lo[cell], len = ix->hi[cell] - k + 1;
    while (len > 1) {
        uint64_t half = len / 2;
        k = O[k + half] <= x ? k + half : k;
        len -= half;
    }
    /* The cell's bounds were rounded: step to the exact segment (usually zero steps). */
    while (k + 1 < ix->S && O[k + 1] <= x)
        k++;
    while (k > 0 && O[k] > x)
        k--;
    return k;
}

#endif
