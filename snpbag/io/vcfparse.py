"""Compiled (numba) parsing of VCF text: fixed columns of many records, then their GT calls.

The text reader (:mod:`snpbag.io.vcftext`) hands these loops whole pieces of inflated
text with the line boundaries found, so Python does no work per record: one call finds
the first nine tabs, POS and the chromosome runs of a few hundred records, one call
replays the record filter of :meth:`VcfReader.blocks` (contig runs, sort order, dropped
records, duplicate SNPs), and one call decodes the calls of a block of records. The GT
loops release the GIL (``nogil``), so blocks decode in parallel threads.

A call the loops do not understand exactly (ploidy above 2, an allele above 127, any
byte outside ``[0-9.|/]`` in GT, a FORMAT not starting with GT, a wrong number of
sample columns) marks its record "odd"; the caller parses odd records with the
per-field reference parser, which gives the same values or raises the user's error.
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, types

# the C library's memchr finds line ends ~8x faster than a byte loop; declared as an
# external symbol (pointers as 64-bit integers) so the functions using it stay cacheable
_memchr = types.ExternalFunction("memchr", types.int64(types.int64, types.int32, types.int64))

# Codes of filter_records' first error.
ERR_NONE, ERR_NOT_CONTIGUOUS, ERR_UNSORTED, ERR_DUPLICATE = 0, 1, 2, 3

assert sys.byteorder == "little", "the word-at-a-time GT loops read text as little-endian uint32"

_TAB, _NL, _PIPE, _SLASH, _DOT, _COLON = 9, 10, 124, 47, 46, 58
_ZERO = 48

_SNP_BASE = np.zeros(256, dtype=np.bool_)
for _c in b"ACGTacgt":
    _SNP_BASE[_c] = True


@njit(cache=True, nogil=True)
def find_lines(buf, a, b, starts, ends):  # pragma: no cover - compiled
    """Record lines of ``buf[a:b]`` (which ends with a newline): (count, where it stopped).

    Fills ``starts``/``ends`` (the newline) of non-empty lines not starting with ``#``,
    at most their size; call again from the returned offset until it is ``b``.
    """
    base = np.int64(buf.ctypes.data)
    k = 0
    s = a
    while s < b and k < starts.size:
        e = _memchr(base + s, np.int32(_NL), b - s)
        e = b if e == 0 else e - base
        if e > s and buf[s] != 35:
            starts[k] = s
            ends[k] = e
            k += 1
        s = e + 1
    return k, s


@njit(cache=True, nogil=True)
def newline_bounds(buf):  # pragma: no cover - compiled
    """(first, last) offsets of a newline in ``buf``; (−1, −1) when there is none."""
    base = np.int64(buf.ctypes.data)
    f = _memchr(base, np.int32(_NL), buf.size)
    if f == 0:
        return -1, -1
    last = buf.size - 1
    while buf[last] != _NL:
        last -= 1
    return f - base, last


@njit(cache=True, nogil=True)
def scan_records(buf, starts, ends, prev_chrom, tabs, ntab, pos, same, simple):  # pragma: no cover - compiled
    """Fixed columns of the lines ``buf[starts[i]:ends[i]]`` (no newline).

    Fills ``tabs[i]`` with the offsets of the line's first nine tabs (``ntab[i]`` found),
    ``pos[i]`` with POS when it is 1 to 18 plain digits (else −1: the caller asks Python's
    ``int``), ``same[i]`` when CHROM equals the previous line's (``prev_chrom`` before
    the first), and ``simple[i]`` when REF and ALT are single bases from ``ACGTacgt`` (a
    biallelic SNP without looking further).
    """
    snp = _SNP_BASE
    for i in range(starts.size):
        s, e = starts[i], ends[i]
        k = 0
        p = s
        while p < e and k < 9:
            if buf[p] == _TAB:
                tabs[i, k] = p
                k += 1
            p += 1
        ntab[i] = k
        if k < 9:
            continue
        # CHROM: equal to the previous record's?
        c0 = tabs[i, 0]
        if i == 0:
            eq = c0 - s == prev_chrom.size
            if eq:
                for j in range(prev_chrom.size):
                    if buf[s + j] != prev_chrom[j]:
                        eq = False
                        break
        else:
            ps = starts[i - 1]
            eq = ntab[i - 1] == 9 and c0 - s == tabs[i - 1, 0] - ps
            if eq:
                for j in range(c0 - s):
                    if buf[s + j] != buf[ps + j]:
                        eq = False
                        break
        same[i] = eq
        v = 0
        a, b = tabs[i, 0] + 1, tabs[i, 1]
        if b - a < 1 or b - a > 18:
            v = -1
        else:
            for j in range(a, b):
                d = buf[j] - _ZERO
                if d < 0 or d > 9:
                    v = -1
                    break
                v = v * 10 + d
        pos[i] = v
        r, t = tabs[i, 2] + 1, tabs[i, 3] + 1  # REF, ALT starts
        simple[i] = tabs[i, 3] - r == 1 and tabs[i, 4] - t == 1 and snp[buf[r]] and snp[buf[t]]


@njit(cache=True, nogil=True)
def filter_records(chrom, pos, reason, pos_min, state, done, keep, dropped, changes):  # pragma: no cover
    """Replay :meth:`VcfReader.blocks`' per-record checks over a batch of records.

    ``chrom``: an id per record (equal names, equal ids); ``reason``: 0 for a biallelic
    SNP, else 1 + its index in DROP_REASONS; ``state``: [current chrom id (−1 none),
    last POS, last kept POS, records counted, records kept], carried between batches;
    ``done[id]``: chromosomes already left. Fills ``keep``, ``dropped`` (per reason) and
    ``changes`` (records where a new chromosome run starts, in order).

    Returns (error code, record index, number of changes); on an error the batch stops
    there.
    """
    cur, last_pos, last_kept = state[0], state[1], state[2]
    nch = 0
    code, at = ERR_NONE, -1
    for i in range(pos.size):
        p = pos[i]
        if p < pos_min:
            continue
        state[3] += 1
        c = chrom[i]
        if c != cur:
            if done[c]:
                code, at = ERR_NOT_CONTIGUOUS, i
                break
            if cur >= 0:
                done[cur] = True
            cur, last_pos, last_kept = c, 0, -1
            changes[nch] = i
            nch += 1
        if p < last_pos:
            code, at = ERR_UNSORTED, i
            break
        last_pos = p
        r = reason[i]
        if r != 0:
            dropped[r - 1] += 1
            continue
        if p == last_kept:
            code, at = ERR_DUPLICATE, i
            break
        last_kept = p
        keep[i] = True
        state[4] += 1
    state[0], state[1], state[2] = cur, last_pos, last_kept
    return code, at, nch


@njit(inline="always")
def _allele(buf, p, e):  # pragma: no cover - compiled
    """(allele, next offset) at ``p``: digits (at most 127) or '.' (−1); allele −3 when neither."""
    if p >= e:
        return -3, p
    c = buf[p]
    if c == _DOT:
        return -1, p + 1
    v = 0
    q = p
    while q < e:
        d = buf[q] - _ZERO
        if d < 0 or d > 9:
            break
        v = v * 10 + d
        if v > 127:
            return -3, q
        q += 1
    if q == p:
        return -3, p
    return v, q


@njit(inline="always")
def _call(buf, p, e):  # pragma: no cover - compiled
    """One sample field from ``p`` up to its tab or ``e``: (a0, a1, phased, end offset, ok).

    a1 is −2 for a haploid call (phased by convention); anything after ``:`` is skipped.
    """
    # the common field: one digit, separator, one digit, then the tab or the line end
    if p + 3 <= e:
        c0, c1, c2 = buf[p], buf[p + 1], buf[p + 2]
        if (c1 == _PIPE or c1 == _SLASH) and (p + 3 == e or buf[p + 3] == _TAB):
            d0, d2 = c0 - _ZERO, c2 - _ZERO
            if 0 <= d0 <= 1 and 0 <= d2 <= 1:
                return d0, d2, c1 == _PIPE, p + 3, True
    a0, q = _allele(buf, p, e)
    if a0 == -3:
        return 0, 0, False, q, False
    a1, phased = -2, True
    if q < e and (buf[q] == _PIPE or buf[q] == _SLASH):
        phased = buf[q] == _PIPE
        a1, q = _allele(buf, q + 1, e)
        if a1 == -3:
            return 0, 0, False, q, False
        if q < e and (buf[q] == _PIPE or buf[q] == _SLASH):  # ploidy 3+
            return 0, 0, False, q, False
    if q < e and buf[q] == _COLON:
        while q < e and buf[q] != _TAB:
            q += 1
    if q < e and buf[q] != _TAB:
        return 0, 0, False, q, False
    return a0, a1, phased, q, True


@njit(inline="always")
def _gt_first(buf, f0, f1):  # pragma: no cover - compiled
    """FORMAT ``buf[f0:f1]`` is ``GT`` or starts with ``GT:``."""
    return f1 - f0 >= 2 and buf[f0] == 71 and buf[f0 + 1] == 84 and (f1 - f0 == 2 or buf[f0 + 2] == _COLON)


# A sample field "a|b\t" read as one little-endian uint32. Clearing bit 0 of bytes 0 and 2
# maps '0'/'1' alleles onto one value, so checking a call is two word comparisons.
_CLEAR = np.uint32(0xFFFEFFFE)
_W_PIPE = np.uint32(0x30 | _PIPE << 8 | 0x30 << 16 | _TAB << 24)
_W_SLASH = np.uint32(0x30 | _SLASH << 8 | 0x30 << 16 | _TAB << 24)
_LOW3 = np.uint32(0x00FFFFFF)


@njit(inline="always")
def _fixed_words(buf, p, e, n_all):  # pragma: no cover - compiled
    """The ``n_all`` fields from ``p`` as uint32 words when the text is as long as ``n_all`` 3-byte calls, else None.

    The last word's fourth byte is the line end at ``e`` (not checked).
    """
    if e - p != 4 * n_all - 1:
        return None
    return buf[p:p + 4 * n_all].view(np.uint32)


@njit(inline="always")
def _word_bad(w, last):  # pragma: no cover - compiled
    """Nonzero unless word ``w`` is a call "a|b"/"a/b" with a, b in 0/1, then a tab (not for the last)."""
    m = w & _CLEAR
    if last:
        m &= _LOW3
        return (m != (_W_PIPE & _LOW3)) & (m != (_W_SLASH & _LOW3))
    return (m != _W_PIPE) & (m != _W_SLASH)


@njit(cache=True, nogil=True)
def decode_calls(buf, fmt0, fmt1, s0, s1, n_all, column, gt, gt16, phased, row0, ok, high):  # pragma: no cover
    """GT calls of records (FORMAT ``buf[fmt0:fmt1]``, samples ``buf[s0:s1]``) into rows ``row0 + i``.

    ``column[j]``: output index of sample column j (−1: not kept). ``gt`` (rows, n, 2) int8
    gets VCF Zarr's values, as the finished block of :meth:`VcfReader.blocks` holds them:
    −1 missing, −2 ploidy fill, a missing haploid call as (−1, −1); ``gt16`` is the same
    memory as (rows, n) uint16 (both alleles of a call in one store); ``phased`` (rows, n)
    (haploid calls phased). ``ok[i]`` False: record i is odd and its row unfinished;
    ``high[i]``: an allele index above 1 in a kept column.
    """
    identity = column.size == phased.shape[1]
    pipe = np.uint32(_PIPE << 8)
    for i in range(s0.size):
        r = row0 + i
        good = _gt_first(buf, fmt0[i], fmt1[i])
        p, e = s0[i], s1[i]
        high[i] = False
        words = _fixed_words(buf, p, e, n_all) if good else None
        if words is not None:  # every call "a|b" or "a/b" with a, b in 0/1: one word each
            bad = False
            last = n_all - 1
            if identity:
                for j in range(last):
                    w = words[j]
                    bad |= _word_bad(w, False)
                    gt16[r, j] = (w & 1) | ((w >> 8) & 0x100)
                    phased[r, j] = (w & 0xFF00) == pipe
            else:
                for j in range(last):
                    w = words[j]
                    bad |= _word_bad(w, False)
                    o = column[j]
                    if o >= 0:
                        gt16[r, o] = (w & 1) | ((w >> 8) & 0x100)
                        phased[r, o] = (w & 0xFF00) == pipe
            w = words[last]
            bad |= _word_bad(w, True)
            o = column[last]
            if o >= 0:
                gt16[r, o] = (w & 1) | ((w >> 8) & 0x100)
                phased[r, o] = (w & 0xFF00) == pipe
            if not bad:
                ok[i] = True
                continue
        j = 0
        hi = False
        while good:
            a0, a1, ph, q, fine = _call(buf, p, e)
            if not fine:
                good = False
                break
            o = column[j]
            if o >= 0:
                if a0 > 1 or a1 > 1:
                    hi = True
                if a1 == -2:
                    ph = True
                    if a0 == -1:
                        a1 = -1
                gt[r, o, 0] = a0
                gt[r, o, 1] = a1
                phased[r, o] = ph
            j += 1
            if q == e:
                break
            p = q + 1  # past the tab
            if j == n_all:
                good = False
        ok[i] = good and j == n_all
        high[i] = hi


@njit(cache=True, nogil=True)
def decode_dosages(buf, fmt0, fmt1, s0, s1, n_all, column, out, row0, ok, high):  # pragma: no cover
    """ALT dosages of records into rows ``row0 + i`` of ``out`` (rows, n) int8, as alt_dosage gives them.

    −1 where an allele is missing, a haploid call counts twice. ``high[i]``: an allele
    index above 1 (the caller's error at a biallelic site); ``ok[i]`` as in :func:`decode_calls`.
    """
    identity = column.size == out.shape[1]
    for i in range(s0.size):
        r = row0 + i
        good = _gt_first(buf, fmt0[i], fmt1[i])
        p, e = s0[i], s1[i]
        high[i] = False
        words = _fixed_words(buf, p, e, n_all) if good else None
        if words is not None:
            bad = False
            last = n_all - 1
            if identity:
                for j in range(last):
                    w = words[j]
                    bad |= _word_bad(w, False)
                    out[r, j] = (w & 1) + ((w >> 16) & 1)
            else:
                for j in range(last):
                    w = words[j]
                    bad |= _word_bad(w, False)
                    o = column[j]
                    if o >= 0:
                        out[r, o] = (w & 1) + ((w >> 16) & 1)
            w = words[last]
            bad |= _word_bad(w, True)
            if column[last] >= 0:
                out[r, column[last]] = (w & 1) + ((w >> 16) & 1)
            if not bad:
                ok[i] = True
                continue
        j = 0
        hi = False
        while good:
            a0, a1, ph, q, fine = _call(buf, p, e)
            if not fine:
                good = False
                break
            o = column[j]
            if o >= 0:
                if a0 > 1 or a1 > 1:
                    hi = True
                if a1 == -2:
                    out[r, o] = -1 if a0 < 0 else 2 * a0
                elif a0 < 0 or a1 < 0:
                    out[r, o] = -1
                else:
                    out[r, o] = a0 + a1
            j += 1
            if q == e:
                break
            p = q + 1
            if j == n_all:
                good = False
        ok[i] = good and j == n_all
        high[i] = hi
