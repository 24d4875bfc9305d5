#!/usr/bin/env python3
"""make_corpus.py: writes the fuzzers' seed corpora (Python standard library only, no numpy).

    python3 tests/fuzz/make_corpus.py [--cases tests/cases/ap]

corpus/fuzz_npy/:    .npy files: a valid file of every dtype and header version the readers take,
                     and one of every malformed kind they reject (named after what is wrong).
corpus/fuzz_inputs/: logits + targets pairs in fuzz_inputs.c's layout (delta byte, 2-byte logits
                     length, logits file, targets file): the SPEC fixture cases, generated inputs
                     of several shapes and distributions, and the edge cases of the SPEC.

Seeds are deterministic (fixed random seed): rerunning rewrites the same bytes. The fuzzers'
findings are kept as finding-<what>.bin: small readable reproducers are made here, and raw inputs
a fuzzer saved may be added beside them by hand (this script deletes nothing).
"""
import argparse
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FMT = {'<f4': '<f', '<f8': '<d', '|i1': 'b', '<i2': '<h', '<i4': '<i', '<i8': '<q',
       '|u1': 'B', '<u2': '<H', '<u4': '<I', '<u8': '<Q', '|b1': '?', '>f4': '>f', '>i2': '>h'}
# fuzz_inputs.c's delta_table: the byte that selects each delta.
DELTAS = [1.0, 0.5, 0.25, 2.0, 0.1, 4.0, 0.01, 100.0, 1e-3, 10.0, 0.3, 1e-4, 0.05, 20.0, 1.5, 1e3]


def header_dict(descr, shape, fortran=False):
    shp = '(%d,)' % shape[0] if len(shape) == 1 else '(%s)' % ', '.join(str(d) for d in shape)
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, 'True' if fortran else 'False', shp)


def npy_raw(dict_text, data=b'', version=1, pad=True):
    """Preamble + header (padded to 64 bytes like numpy) + data."""
    lenbytes = 2 if version == 1 else 4
    hdr = dict_text
    if pad:
        total = 8 + lenbytes + len(hdr) + 1
        hdr += ' ' * ((64 - total % 64) % 64)
    hdr += '\n'
    h = hdr.encode('latin-1')
    pre = b'\x93NUMPY' + bytes([version, 0])
    pre += struct.pack('<H', len(h)) if version == 1 else struct.pack('<I', len(h))
    return pre + h + data


def pack(descr, values):
    return b''.join(struct.pack(FMT[descr], v) for v in values)


def npy(descr, shape, values, version=1):
    return npy_raw(header_dict(descr, shape), pack(descr, values), version)


def write(dirname, name, data):
    d = os.path.join(HERE, 'corpus', dirname)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def npy_corpus():
    w = lambda name, data: write('fuzz_npy', name, data)
    # ---- valid ----
    w('logits_f4_1d.npy', npy('<f4', [5], [0.5, -1.25, 3.0, 0.0, -7.5]))
    w('logits_f4_3d.npy', npy('<f4', [2, 3, 4], [i * 0.25 - 3 for i in range(24)]))
    w('logits_f4_empty.npy', npy('<f4', [0], []))
    w('logits_f4_empty_2d.npy', npy('<f4', [3, 0], []))
    w('logits_f4_scalar.npy', npy('<f4', [], [2.5]))
    w('logits_f4_v2.npy', npy('<f4', [3], [1.0, 2.0, 3.0], version=2))
    w('logits_f4_v3.npy', npy('<f4', [3], [1.0, 2.0, 3.0], version=3))
    w('logits_f4_ternary.npy', npy('<f4', [4], [1.0, 0.0, -1.0, -0.0]))
    w('logits_f4_extremes.npy', npy('<f4', [4], [3.4028234663852886e38, -1e-45, 1e-38, -3e38]))
    w('logits_f4_keys_reordered.npy',
      npy_raw("{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}", pack('<f4', [1, 2])))
    w('logits_f4_double_quotes.npy',
      npy_raw('{"descr": "<f4", "fortran_order": False, "shape": (2,)}', pack('<f4', [1, 2])))
    w('logits_f4_long_dims.npy',
      npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }", pack('<f4', [1, 2])))
    w('logits_f4_unpadded.npy', npy_raw(header_dict('<f4', [2]), pack('<f4', [1, 2]), pad=False))
    w('logits_f4_native_order.npy', npy_raw(header_dict('=f4', [2]), pack('<f4', [1, 2])))
    w('f8_1d.npy', npy('<f8', [6], [0.1, -0.2, 1e-300, -1e300, 0.0, 1.0]))
    w('f8_ternary.npy', npy('<f8', [3], [-1.0, 0.0, 1.0]))
    w('f8_nan_allowed.npy', npy('<f8', [2], [float('nan'), float('inf')]))
    vals = [1, 0, -1, 0, 1, -1]
    for descr in ['|i1', '<i2', '<i4', '<i8', '<f4', '<f8']:
        w('targets_%s.npy' % descr[1:], npy(descr, [2, 3], vals))
    for descr in ['|u1', '<u2', '<u4', '<u8', '|b1']:
        w('targets_%s.npy' % descr[1:], npy(descr, [2, 3], [abs(v) for v in vals]))
    w('targets_i1_v2.npy', npy('|i1', [3], [1, 0, -1], version=2))
    w('targets_i2_big.npy', npy('<i2', [5000], [(i % 3) - 1 for i in range(5000)]))

    # ---- malformed: each rejected, each for one reason ----
    good = npy('<f4', [4], [0.5, 1.0, 1.5, 2.0])
    w('bad_empty_file.npy', b'')
    w('bad_no_magic.npy', b'NOTNUMPY-file-at-all')
    w('bad_short_preamble.npy', b'\x93NUMPY\x01')
    w('bad_version_1_1.npy', good[:7] + b'\x01' + good[8:])
    w('bad_version_4_0.npy', b'\x93NUMPY\x04\x00' + good[8:])
    w('bad_header_len_huge.npy', b'\x93NUMPY\x02\x00\xff\xff\xff\xff' + good[10:])
    w('bad_header_truncated.npy', good[:40])
    w('bad_header_len_zero.npy', b'\x93NUMPY\x01\x00\x00\x00')
    w('bad_not_a_dict.npy', npy_raw("['descr', '<f4']", pack('<f4', [1])))
    w('bad_missing_descr.npy', npy_raw("{'fortran_order': False, 'shape': (1,), }", pack('<f4', [1])))
    w('bad_missing_fortran.npy', npy_raw("{'descr': '<f4', 'shape': (1,), }", pack('<f4', [1])))
    w('bad_missing_shape.npy', npy_raw("{'descr': '<f4', 'fortran_order': False, }", pack('<f4', [1])))
    w('bad_repeated_key.npy',
      npy_raw("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
              pack('<f4', [1])))
    w('bad_unknown_key.npy',
      npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", pack('<f4', [1])))
    w('bad_structured_descr.npy',
      npy_raw("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
              pack('<f4', [1])))
    w('bad_fortran_true.npy', npy_raw(header_dict('<f4', [2, 2], fortran=True), pack('<f4', [1] * 4)))
    w('bad_fortran_not_bool.npy',
      npy_raw("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", pack('<f4', [1])))
    w('bad_big_endian_f4.npy', npy('>f4', [2], [1.0, 2.0]))
    w('bad_big_endian_i2.npy', npy('>i2', [2], [1, 0]))
    w('bad_shape_not_tuple.npy',
      npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (5), }", pack('<f4', [1] * 5)))
    w('bad_shape_negative.npy',
      npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", pack('<f4', [1])))
    w('bad_shape_9_dims.npy', npy_raw(header_dict('<f4', [1] * 9), pack('<f4', [1])))
    w('bad_shape_dim_overflow.npy',
      npy_raw(header_dict('<f4', [1]).replace('(1,)', '(99999999999999999999999,)'), b''))
    w('bad_shape_product_overflow.npy',
      npy_raw(header_dict('<f4', [4294967296, 4294967296, 16]), b''))
    w('bad_shape_bytes_overflow.npy', npy_raw(header_dict('<f4', [2305843009213693952 * 2]), b''))
    w('bad_shape_huge_truncated.npy', npy_raw(header_dict('<f4', [1000000000000]), b'\0' * 16))
    w('bad_dtype_c8.npy', npy_raw(header_dict('<c8', [1]), b'\0' * 8))
    w('bad_dtype_f2.npy', npy_raw(header_dict('<f2', [2]), b'\0' * 4))
    w('bad_dtype_unicode.npy', npy_raw(header_dict('<U3', [1]), b'\0' * 12))
    w('bad_dtype_object.npy', npy_raw(header_dict('|O', [1]), b'\0' * 8))
    w('bad_dtype_i3.npy', npy_raw(header_dict('<i3', [1]), b'\0' * 3))
    w('bad_truncated_data.npy', good[:-1])
    w('bad_trailing_data.npy', good + b'\0')
    w('bad_logit_nan.npy', npy('<f4', [3], [0.5, float('nan'), 1.0]))
    w('bad_logit_inf.npy', npy('<f4', [3], [0.5, 1.0, float('-inf')]))
    w('bad_target_2.npy', npy('|i1', [3], [1, 2, 0]))
    w('bad_target_half.npy', npy('<f4', [3], [1.0, 0.5, 0.0]))
    w('bad_target_nan.npy', npy('<f8', [2], [1.0, float('nan')]))
    w('bad_target_u1_255.npy', npy('|u1', [2], [1, 255]))
    w('bad_target_i8_min.npy', npy('<i8', [2], [0, -2 ** 63]))
    w('bad_target_bool_2.npy', npy_raw(header_dict('|b1', [2]), b'\x01\x02'))
    w('bad_string_escape.npy',
      npy_raw("{'descr': '<f\\4', 'fortran_order': False, 'shape': (1,), }", pack('<f4', [1])))
    w('bad_unterminated_string.npy', npy_raw("{'descr': '<f4", b''))
    w('bad_text_after_dict.npy', npy_raw(header_dict('<f4', [1]) + ' x', pack('<f4', [1])))
    w('bad_descr_too_long.npy', npy_raw(header_dict('<' + 'f' * 60, [1]), pack('<f4', [1])))


def container(delta, logits, targets):
    """fuzz_inputs.c's layout."""
    i = DELTAS.index(delta)
    assert len(logits) < 65536
    return bytes([i]) + struct.pack('<H', len(logits)) + logits + targets


def gen_case(rng, n, pos_rate, ign_rate, pos_mu, neg_mu, sd):
    s, t = [], []
    for _ in range(n):
        u = rng.random()
        if u < ign_rate:
            t.append(-1)
            s.append(rng.gauss(neg_mu, sd))
        elif u < ign_rate + pos_rate:
            t.append(1)
            s.append(rng.gauss(pos_mu, sd))
        else:
            t.append(0)
            s.append(rng.gauss(neg_mu, sd))
    return s, t


def inputs_corpus(cases_dir):
    w = lambda name, data: write('fuzz_inputs', name, data)
    # The SPEC fixtures computed by the original PyTorch code (those within the size cap).
    if cases_dir and os.path.isdir(cases_dir):
        for name in sorted(os.listdir(cases_dir)):
            d = os.path.join(cases_dir, name)
            try:
                delta = json.load(open(os.path.join(d, 'expected.json')))['delta']
                lg = open(os.path.join(d, 'logits.npy'), 'rb').read()
                tg = open(os.path.join(d, 'targets.npy'), 'rb').read()
            except (OSError, KeyError, ValueError):
                continue
            if delta in DELTAS and len(lg) < 65536 and (len(lg) - 128) // 4 <= 4096:
                w('case_%s.bin' % name, container(delta, lg, tg))

    rng = random.Random(12345)
    f4 = lambda shape, v: npy('<f4', shape, v)
    i1 = lambda shape, v: npy('|i1', shape, v)
    # Generated: sizes, positive rates, overlap (early: everything overlaps; late: separated).
    for n, pr, pm, nm, sd, delta, tag in [
            (40, 0.1, 0.0, -0.5, 1.0, 1.0, 'n40'),
            (300, 0.05, -4.5, -4.6, 0.3, 0.25, 'early'),
            (1000, 0.02, -0.5, -3.0, 1.5, 1.0, 'mid'),
            (1000, 0.01, 2.5, -6.0, 1.5, 0.5, 'late'),
            (4096, 0.005, 0.0, -2.0, 1.0, 2.0, 'cap'),
            (200, 0.5, 0.0, 0.0, 1.0, 0.1, 'dense_pos'),
            (500, 0.02, 0.0, -1.0, 1.0, 0.01, 'narrow_ramp'),
            (500, 0.02, 0.0, -1.0, 1.0, 100.0, 'wide_ramp')]:
        s, t = gen_case(rng, n, pr, 0.05, pm, nm, sd)
        w('gen_%s.bin' % tag, container(delta, f4([n], s), i1([n], t)))
    # Targets in other dtypes, 2-D and 3-D shapes.
    s, t = gen_case(rng, 60, 0.1, 0.1, 0.0, -0.5, 1.0)
    for descr in ['<i2', '<i8', '<f4', '<f8']:
        w('dtype_%s.bin' % descr[1:], container(1.0, f4([6, 10], s), npy(descr, [6, 10], t)))
    tu = [max(v, 0) for v in t]
    for descr in ['|u1', '<u4', '|b1']:
        w('dtype_%s.bin' % descr[1:], container(1.0, f4([6, 10], s), npy(descr, [6, 10], tu)))
    w('shape_3d.bin', container(0.5, f4([2, 5, 6], s), i1([2, 5, 6], t)))
    # The SPEC's edge cases.
    w('edge_empty.bin', container(1.0, f4([0], []), i1([0], [])))
    w('edge_no_positives.bin', container(1.0, f4([5], [1, 2, 3, 4, 5]), i1([5], [0, 0, -1, 0, 0])))
    w('edge_all_ignored.bin', container(1.0, f4([4], [1, 2, 3, 4]), i1([4], [-1] * 4)))
    w('edge_one_positive.bin', container(1.0, f4([4], [0.5, 0, 1, -3]), i1([4], [1, 0, 0, 0])))
    w('edge_all_positive.bin', container(1.0, f4([4], [0.5, 0, 1, -3]), i1([4], [1] * 4)))
    w('edge_ties.bin', container(1.0, f4([8], [1.0] * 8), i1([8], [1, 0, 1, 0, 0, 1, -1, 0])))
    # Negatives exactly at the pruning threshold and at the ramp's ends (delta 0.5).
    w('edge_threshold.bin', container(0.5, f4([6], [1.0, 0.5, 1.5, 2.0, 0.0, 0.4999999]),
                                      i1([6], [1, 0, 0, 0, 0, 0])))
    w('edge_huge_logits.bin', container(1.0, f4([6], [1e30, 1e30, -1e30, 3e38, -3e38, 1e30]),
                                        i1([6], [1, 0, 0, 0, 0, 1])))
    w('edge_far_apart.bin', container(1.0, f4([4], [1e6, 1e6 + 1, -1e6, 1e6 - 0.5]),
                                      i1([4], [1, 1, 0, 0])))
    w('edge_denormals.bin', container(1e-4, f4([5], [1e-45, -1e-45, 0.0, 1e-40, -0.0]),
                                      i1([5], [1, 0, 0, 1, 0])))
    # Rejected on the way: shape mismatch, over the size cap, bad values.
    w('reject_shape_mismatch.bin', container(1.0, f4([4], [1, 2, 3, 4]), i1([2, 2], [1, 0, 0, 0])))
    w('reject_length_mismatch.bin', container(1.0, f4([4], [1, 2, 3, 4]), i1([5], [1, 0, 0, 0, 0])))
    s, t = gen_case(rng, 5000, 0.01, 0.0, 0.0, -1.0, 1.0)
    w('reject_over_cap.bin', container(1.0, f4([5000], s), i1([5000], t)))
    w('reject_nan_logit.bin', container(1.0, f4([3], [1, float('nan'), 0]), i1([3], [1, 0, 0])))
    w('reject_bad_target.bin', container(1.0, f4([3], [1, 2, 0]), i1([3], [1, 3, 0])))
    w('reject_short.bin', b'\x00\x01')

    # Findings (see the report in tests/fuzz/FINDINGS.md), rebuilt small and readable.
    # One positive far below the others: the positives' span is 1e10 (1e12) ramp widths.
    s, t = gen_case(random.Random(1), 400, 0.03, 0.02, 0.0, -1.0, 1.0)
    s[0], t[0] = -1e10, 1
    w('finding-sorted-wide-positive-span.bin', container(1.0, f4([400], s), i1([400], t)))
    s[0] = -1e12
    w('finding-thrust-wide-positive-span.bin', container(1.0, f4([400], s), i1([400], t)))
    # The same with a span of 8192.5 ramp half-widths: thrust_sorted's fixed-point breakpoint
    # positions wrap at 2^64 = 4096 ramp widths from the lowest breakpoint, inside the data.
    s[0] = -8192.5
    w('finding-thrust-position-wrap.bin', container(1.0, f4([400], s), i1([400], t)))
    # Tied positives and a negative at 1e30, where s +- delta rounds to s in double: H(0) = 0.5
    # is counted as 1.
    w('finding-sorted-tie-beyond-double-ulp.bin',
      container(1.0, f4([3], [1e30, 1e30, 1e30]), i1([3], [1, 0, 1])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', default=os.path.join(HERE, '..', 'cases', 'ap'))
    args = ap.parse_args()
    npy_corpus()
    inputs_corpus(args.cases)


if __name__ == '__main__':
    main()
