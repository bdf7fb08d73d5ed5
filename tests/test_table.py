import pytest

from snpbag.errors import InputError
from snpbag.inference.relatepairs import read_pairs
from snpbag.io.table import table_rows


def test_table_rows_skip_comments_blank_and_header_lines_and_refuse_short_rows(tmp_path):
    t = tmp_path / "t.tsv"
    t.write_text("#IID1 IID2\nIID1 IID2\n\n  a   b  extra\nc\td\n")
    assert list(table_rows(t, flag="--x", headers=("IID1",), fields=2, need="two ids")) == \
        [(4, ["a", "b", "extra"]), (5, ["c", "d"])]
    assert [n for n, _ in table_rows(t, flag="--x", headers=(), fields=2, need="two ids")] == [2, 4, 5]
    t.write_text("a b\nlonely\n")
    with pytest.raises(InputError, match=r"^--pairs .*t.tsv line 2: need two sample ids$"):
        read_pairs(t, ["a", "b", "lonely"])
