import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from typer.testing import CliRunner

from sftpick.cli import app
from sftpick.compare import compare, top_overlap
from cli_errors import one_line_error


def _table(ids, scores, column="ifd"):
    return pa.table({"row": list(range(len(ids))), "id": ids, column: scores})


def test_compare_matches_scipy_on_known_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(scale=0.7, size=200)
    result = compare(_table([f"r{i}" for i in range(200)], x), _table([f"r{i}" for i in range(200)], y))
    assert result.n == 200 and result.key == "id"
    assert result.spearman == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result.kendall == pytest.approx(stats.kendalltau(x, y).statistic)
    assert result.spearman_p == pytest.approx(stats.spearmanr(x, y).pvalue)


def test_compare_matches_rows_by_id_whatever_their_order():
    a = _table(["a", "b", "c", "d", "e"], [1.0, 2.0, 3.0, 4.0, 5.0])
    b = _table(["e", "d", "c", "b", "a", "zz"], [50.0, 40.0, 30.0, 20.0, 10.0, -1.0])
    result = compare(a, b)
    assert (result.n, result.n_a, result.n_b) == (5, 5, 6)
    assert result.spearman == pytest.approx(1.0)
    assert result.kendall == pytest.approx(1.0)


def test_compare_matches_by_content_when_ids_repeat():
    a = _table(["same", "same", "x"], [1.0, 2.0, 3.0]).append_column("content_hash", pa.array(["h1", "h2", "h3"]))
    b = _table(["same", "same", "x"], [1.0, 2.0, 3.0]).append_column("content_hash", pa.array(["h3", "h2", "h1"]))
    result = compare(a, b)  # b holds the same records in another order: position would give rho = 1
    assert result.key == "content_hash"
    assert result.spearman == pytest.approx(-1.0)


def test_compare_never_matches_by_position():
    a = _table(["same", "same", "x"], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="cannot match rows: ids are not unique"):
        compare(a, a)


def test_compare_refuses_tables_of_different_data():
    a = _table([f"a{i}" for i in range(10)], np.arange(10.0))
    b = _table([f"a{i}" for i in range(4)] + [f"b{i}" for i in range(6)], np.arange(10.0))
    with pytest.raises(ValueError, match=r"only 4 rows of A \(10\) and B \(10\) match by 'id'"):
        compare(a, b, key="id")
    assert compare(a, _table([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)], np.arange(10.0))).n == 5


def test_compare_leaves_out_nan_scores():
    a = _table(["a", "b", "c", "d"], [1.0, np.nan, 3.0, 4.0])
    b = _table(["a", "b", "c", "d"], [1.0, 2.0, 3.0, np.inf])
    assert compare(a, b).n == 2


@pytest.mark.parametrize("fraction, k, expected", [(0.05, 5, 0.6), (0.10, 10, 0.8), (0.15, 15, 14 / 15)])
def test_top_overlap_counts_shared_members_of_the_top_k(fraction, k, expected):
    x = np.arange(100, dtype=float)[::-1]  # best first: 0..k-1 are the top k
    y = x.copy()
    swap = {0.05: 2, 0.10: 2, 0.15: 1}[fraction]  # push `swap` of x's top k out of y's top k
    y[:swap] = -1.0
    assert top_overlap(x, y, fraction) == pytest.approx((k - swap) / k) == pytest.approx(expected)


def test_top_overlap_ascending_takes_the_lowest():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([4.0, 3.0, 2.0, 1.0])
    assert top_overlap(x, y, 0.25) == 0.0
    assert top_overlap(x, x, 0.25, ascending=True) == 1.0
    assert compare(_table(list("abcd"), x), _table(list("abcd"), x), ascending=True).top_overlap["5%"] == 1.0


def test_compare_names_a_missing_column():
    with pytest.raises(ValueError, match="column='reward' is not in table A"):
        compare(_table(["a", "b"], [1.0, 2.0]), _table(["a", "b"], [1.0, 2.0]), column="reward")


def test_compare_needs_two_matching_rows():
    with pytest.raises(ValueError, match=r"only 1 row\(s\) match by 'id'"):
        compare(_table(["a", "b"], [1.0, 2.0]), _table(["a", "d"], [1.0, 2.0]))


def test_cli_compare_prints_and_writes_json(tmp_path):
    x = np.linspace(0, 1, 40)
    y = x ** 3
    pq.write_table(_table([str(i) for i in range(40)], x), tmp_path / "a.parquet")
    pq.write_table(_table([str(i) for i in range(40)], y), tmp_path / "b.parquet")
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"),
                                      "--column", "ifd", "--json", str(tmp_path / "agreement.json")])
    assert result.exit_code == 0, result.output
    assert "Spearman" in result.output and "40 rows" in result.output
    written = json.loads((tmp_path / "agreement.json").read_text())
    assert written["n"] == 40 and written["spearman"] == pytest.approx(1.0)
    assert set(written["top_overlap"]) == {"5%", "10%", "15%"}


def test_cli_compare_missing_file_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.parquet"), str(tmp_path / "b.parquet")])
    assert result.exit_code == 2
    assert "no such score table" in one_line_error(result.output)
