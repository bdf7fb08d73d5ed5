"""The compiled VCF text reader against its per-field reference parser, record by record.

The reference reads each line with ``str.split`` and :func:`snpbag.io.vcftext.parse_calls`
(cyvcf2's semantics, checked against cyvcf2 in test_vcf_hypothesis.py); the compiled
loops must give the same calls, dosages, sites and counts for every layout they meet:
fixed ``a|b`` calls, multi-digit alleles, missing and haploid calls, extra FORMAT
fields, CRLF line ends, sample subsets, records split across BGZF blocks and pieces of
text, and any number of threads.
"""

import gzip
import struct
import zlib

import numpy as np
import pytest

from snpbag.io import bgzf
from snpbag.io.bgzf import read_text, write_bgzf
from snpbag.io.dosage import alt_dosage
from snpbag.io.records import classify
from snpbag.io.vcf import VcfReader
from snpbag.io.vcftext import finished_calls, parse_calls
from snpbag.errors import InputError
from snpbag.kinship.source import GenotypeSource, ScanStats

ODD = ["0", "1", ".", "./.", ".|.", "0|.", "./1", "00|01", "001/1", "1/0", "0/0"]


def random_vcf(rng, n_samples: int, n_records: int, *, crlf: bool = False) -> str:
    """Mostly fixed "a|b" records, some with odd calls, GT:DP, dropped records, two chromosomes."""
    lines = ["##fileformat=VCFv4.2", '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(n_samples))]
    pos = 0
    for k in range(n_records):
        chrom = "chr1" if k < n_records // 2 else "2"
        if k == n_records // 2:
            pos = 0
        pos += int(rng.integers(1, 50))
        ref, alt = rng.choice(list("ACGTacgt"), 2, replace=False)
        kind = rng.random()
        if kind < 0.05:
            alt = "A,C"  # multiallelic
        elif kind < 0.1:
            ref = "AT"  # indel
        g = rng.random((n_samples, 2)) < rng.uniform(0, 0.6)
        calls = [f"{int(a)}{'|' if rng.random() < 0.8 else '/'}{int(b)}" for a, b in g]
        fmt = "GT"
        r = rng.random()
        if r < 0.25:  # odd calls here and there: the general loop
            for i in rng.choice(n_samples, max(1, n_samples // 5), replace=False):
                calls[i] = str(rng.choice(ODD))
        elif r < 0.3:
            fmt = "GT:DP"
            calls = [c + ":7" for c in calls]
        ident = "." if rng.random() < 0.7 else f"rs{k}"
        lines.append("\t".join([chrom, str(pos), ident, ref, alt, ".", "PASS", ".", fmt, *calls]))
    end = "\r\n" if crlf else "\n"
    return end.join(lines) + end


def reference(text: str, columns=None):
    """Sites, calls and counts of the biallelic SNPs, one line at a time."""
    out = {"chrom": [], "pos": [], "allele": [], "id": [], "gt": [], "ph": []}
    dropped = {}
    n_all = None
    for line in text.split("\n"):
        line = line.rstrip("\r") if not line.startswith("#") else line
        if line.startswith("#CHROM"):
            n_all = len(line.split("\t")) - 9
        if not line or line.startswith("#"):
            continue
        f = line.split("\t", 9)
        alts = [] if f[4] == "." else f[4].split(",")
        reason = classify(f[3], alts)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        a = parse_calls(f[8].encode(), f[9].encode(), n_all=n_all, columns=columns, where="ref")
        g, p = finished_calls(a)
        out["chrom"].append(f[0])
        out["pos"].append(int(f[1]))
        out["allele"].append((f[3], alts[0]))
        out["id"].append(f[2])
        out["gt"].append(g)
        out["ph"].append(p)
    out["gt"], out["ph"] = np.array(out["gt"]), np.array(out["ph"])
    return out, dropped


def small_bgzf(data: bytes, block: int, *, whole_lines: bool = False) -> bytes:
    """BGZF with ``block`` bytes of text per block (htslib writes 64 KiB), so records span many blocks.

    ``whole_lines``: blocks end at line ends (as bcftools writes them), so pieces of text do too.
    """
    out = []
    cuts = [0]
    while cuts[-1] < len(data):
        end = min(cuts[-1] + block, len(data))
        if whole_lines and end < len(data):
            end = data.index(b"\n", end) + 1
        cuts.append(end)
    for a, b in zip(cuts[:-1], cuts[1:]):
        chunk = data[a:b]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        raw = c.compress(chunk) + c.flush()
        head = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + struct.pack("<H", len(raw) + 25)
        out.append(head + raw + struct.pack("<II", zlib.crc32(chunk), len(chunk)))
    return b"".join(out) + bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def write(tmp_path, text: str, how: str):
    path = tmp_path / ("in.vcf" if how == "plain" else "in.vcf.gz")
    if how == "plain":
        path.write_bytes(text.encode())
    elif how == "gzip":  # one gzip member, not BGZF
        path.write_bytes(gzip.compress(text.encode()))
    elif how == "small-bgzf":
        path.write_bytes(small_bgzf(text.encode(), 700))
    elif how == "line-bgzf":
        path.write_bytes(small_bgzf(text.encode(), 700, whole_lines=True))
    else:
        write_bgzf([text], path)
    return path


def read_blocks(path, *, samples=None, threads=1, size=37):
    r = VcfReader(path, samples=samples, threads=threads)
    assert r.engine == "text"
    blocks = list(r.blocks(size))
    assert all(len(b) == size for b in blocks[:-1])
    cat = {k: np.concatenate([getattr(b, k) for b in blocks]) for k in
           ("contig", "position", "allele", "id", "genotype", "phased")}
    return r, cat


@pytest.mark.parametrize("how", ["plain", "gzip", "bgzf", "small-bgzf", "line-bgzf"])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("subset", [False, True])
def test_blocks_equal_reference(tmp_path, monkeypatch, how, threads, crlf, subset):
    """Small pieces of text (1,000 bytes) and BGZF blocks split most records across pieces."""
    monkeypatch.setattr(bgzf, "PIECE", 1000)
    rng = np.random.default_rng(7 + threads + 2 * crlf + 4 * subset)
    text = random_vcf(rng, 150, 300, crlf=crlf)
    path = write(tmp_path, text, how)
    samples = [f"S{i}" for i in (3, 0, 149, 77)] if subset else None
    columns = np.array(sorted([3, 0, 149, 77])) if subset else None
    ref, dropped = reference(text, columns)
    r, got = read_blocks(path, samples=samples, threads=threads)
    np.testing.assert_array_equal(got["genotype"], ref["gt"])
    np.testing.assert_array_equal(got["phased"], ref["ph"])
    np.testing.assert_array_equal(got["position"], ref["pos"])
    assert [r.contigs[c] for c in got["contig"]] == ref["chrom"]
    assert [tuple(a) for a in got["allele"]] == ref["allele"]
    assert list(got["id"]) == ref["id"]
    assert r.counts.kept == len(ref["pos"])
    assert {k: v for k, v in r.counts.dropped.items() if v} == dropped
    assert r.counts.records == len(ref["pos"]) + sum(dropped.values())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [150, 40])
def test_dosages_equal_reference(tmp_path, monkeypatch, threads, n):
    """GenotypeSource's dosages (KING's input), read in the calling thread or as parallel jobs."""
    monkeypatch.setattr(bgzf, "PIECE", 5000)
    rng = np.random.default_rng(11)
    text = random_vcf(rng, 150, 400)
    path = write(tmp_path, text, "line-bgzf")
    ref, dropped = reference(text, np.arange(n) if n < 150 else None)
    expect = alt_dosage(ref["gt"])
    src = GenotypeSource(path, threads=threads)
    stats = ScanStats()
    if threads == 1:
        got = np.concatenate(list(src.dosages(n, chunk=64, stats=stats)))
    else:
        got = np.concatenate([d for job in src.dosage_jobs(n, chunk=64, stats=stats) for d in job()])
    np.testing.assert_array_equal(got, expect)
    assert stats.variants == len(ref["pos"]) and stats.non_autosomal == 0
    assert {k: v for k, v in stats.dropped.items() if v} == dropped


def test_non_autosomes_skipped_in_dosages(tmp_path):
    text = random_vcf(np.random.default_rng(2), 10, 60).replace("\n2\t", "\nchrX\t")
    path = write(tmp_path, text, "plain")
    ref, _ = reference(text)
    auto = np.array([c == "chr1" for c in ref["chrom"]])
    stats = ScanStats()
    got = np.concatenate(list(GenotypeSource(path).dosages(10, chunk=8, stats=stats)))
    np.testing.assert_array_equal(got, alt_dosage(ref["gt"][auto]))
    assert stats.non_autosomal == int((~auto).sum())


def test_read_text_pieces_and_fallback_inflater(tmp_path, monkeypatch):
    text = random_vcf(np.random.default_rng(3), 200, 200)
    path = write(tmp_path, text, "small-bgzf")
    whole = text.encode()
    for threads in (1, 3):
        pieces = list(read_text(path, threads=threads, piece=3000))
        assert len(pieces) > 40
        assert b"".join(p.tobytes() for p in pieces) == whole
    monkeypatch.setattr(bgzf, "_libdeflate", lambda: None)  # the Python inflater gives the same text
    assert b"".join(p.tobytes() for p in read_text(path, piece=3000)) == whole


def _header(n=2):
    return ("##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(n)) + "\n")


@pytest.mark.parametrize("line, match", [
    ("chr1\t20\t.\tA\tC\t.\t.\t.\tGT\t0|1\t0|2\n", r"in\.vcf: allele index > 1 at biallelic site chr1:20; fix the GT"),
    ("chr1\t20\t.\tA\tC\t.\t.\t.\tGT\t0|1\t12|0\n", r"allele index > 1 at biallelic site chr1:20"),
    ("chr1\t20\t.\tA\tC\t.\t.\t.\tGT\t0|1\n", r"record chr1:20 has 1 sample columns, the header has 2; fix the file"),
    ("chr1\t20\t.\tA\tC\t.\t.\t.\tGT\t0|1|1\t0|0\n", r"record chr1:20 has ploidy 3"),
    ("chr1\t20\t.\tA\tC\t.\t.\t.\tGT\t0|x\t0|0\n", r"record chr1:20: malformed GT"),
    ("chr1\t20\t.\tA\tC\t.\t.\t.\tDP\t7\t9\n", r"record chr1:20 has no GT"),
    ("chr1\t20\t.\tA\tC\t.\t.\n", r"in\.vcf: malformed record with 7 columns .*bcftools view"),
    ("chr1\t2x0\t.\tA\tC\t.\t.\t.\tGT\t0|1\t0|0\n", r"in\.vcf: bad POS b'2x0' on chr1"),
    ("chr1\t3000000000\t.\tA\tC\t.\t.\t.\tGT\t0|1\t0|0\n", r"in\.vcf: POS 3000000000 on chr1 is beyond 2\^31 - 1"),
])
@pytest.mark.parametrize("kind", ["blocks", "blocks-threads", "dosages", "dosage-jobs"])
def test_errors(tmp_path, line, match, kind):
    """A good record first, then the bad one: the message names the file, the record and the fix,
    also when the record is decoded by a pool thread."""
    path = tmp_path / "in.vcf"
    path.write_text(_header() + "chr1\t10\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n" + line)
    with pytest.raises(InputError, match=match) as e:
        if kind.startswith("blocks"):
            list(VcfReader(path, threads=2 if kind == "blocks-threads" else None).blocks(4))
        elif kind == "dosages":
            list(GenotypeSource(path).dosages(2, chunk=4))
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(job) for job in GenotypeSource(path, threads=2).dosage_jobs(2, chunk=4)]
                [f.result() for f in futures]
    assert "\n" not in str(e.value)


def test_wide_alleles_and_positions(tmp_path):
    """Leading zeros, '+'-less big POS and a POS Python's int accepts but the compiled scan does not."""
    path = tmp_path / "in.vcf"
    path.write_text(_header() + "chr1\t10\t.\tA\tC\t.\t.\t.\tGT\t0000001|0\t.\n"
                    "chr1\t 11\t.\tA\tC\t.\t.\t.\tGT\t1\t0/.\n"
                    "chr1\t123456789\t.\tA\tC\t.\t.\t.\tGT\t1|1\t1|1\n")
    r = VcfReader(path)
    (b,) = list(r.blocks(8))
    np.testing.assert_array_equal(b.position, [10, 11, 123456789])
    np.testing.assert_array_equal(b.genotype, [[[1, 0], [-1, -1]], [[1, -2], [0, -1]], [[1, 1], [1, 1]]])
    np.testing.assert_array_equal(b.phased, [[True, True], [True, False], [True, True]])


def test_corrupt_and_truncated_bgzf(tmp_path):
    text = random_vcf(np.random.default_rng(4), 100, 100)
    path = write(tmp_path, text, "bgzf")
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.vcf.gz"
    data[200] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"bad\.vcf\.gz: cannot decompress .*bgzip -t"):
        list(read_text(bad))
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"cut\.vcf\.gz: truncated BGZF file .*bgzip -t"):
        list(read_text(cut))


@pytest.mark.parametrize("kind", ["blocks", "blocks-threads", "dosages", "dosage-jobs"])
def test_first_error_in_file_order(tmp_path, kind):
    """A bad call before an unsorted record is reported, not the later problem (as when read one by one)."""
    path = tmp_path / "in.vcf"
    path.write_text(_header() + "chr1\t10\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n"
                    "chr1\t20\t.\tA\tC\t.\t.\t.\tGT\t0|1|0\t1|1\n"
                    "chr1\t15\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n")
    with pytest.raises(InputError, match=r"record chr1:20 has ploidy 3"):
        if kind.startswith("blocks"):
            list(VcfReader(path, threads=2 if kind == "blocks-threads" else None).blocks(4))
        elif kind == "dosages":
            list(GenotypeSource(path).dosages(2, chunk=4))
        else:
            for job in GenotypeSource(path, threads=2).dosage_jobs(2, chunk=4):
                job()
