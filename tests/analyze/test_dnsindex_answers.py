"""The DNS index reads answers the same from the loader's Arrow lists as from Python lists."""

import numpy as np
import pandas as pd
import pytest

from cicd_audit.analyzers.dnsindex import build_index
from cicd_audit.zeeklog.reader import python_lists


def _frame(answers) -> pd.DataFrame:
    n = len(answers)
    return pd.DataFrame({
        "session": ["a", "a", "b", "b", "b", "b"][:n],
        "query": ["x.example", "y.example", "x.example", "local.", "z.example", "x.example"][:n],
        "id.resp_p": pd.array([53, 53, 53, 5353, 53, 53][:n], dtype="UInt16"),
        "answers": answers,
    })


ANSWERS = [
    ["192.0.2.1", "198.51.100.7"],
    None,                                   # unset
    ["192.0.2.1", "cname.example", "2001:db8::1"],
    ["192.0.2.9"],                          # mDNS: not indexed
    [],                                     # (empty)
    ["2001:DB8:0::1", None],                # an unset element, an address spelled differently
]


def test_arrow_and_python_lists_give_the_same_resolutions():
    pa = pytest.importorskip("pyarrow")  # the fleet extra brings it; the project's machines have it
    as_lists = np.empty(len(ANSWERS), dtype=object)
    as_lists[:] = ANSWERS
    arrow = pd.array(ANSWERS, dtype=pd.ArrowDtype(pa.list_(pa.string())))
    from_arrow = build_index(_frame(arrow)).resolutions
    assert python_lists(arrow).tolist() == ANSWERS
    got = sorted(map(tuple, from_arrow.to_numpy().tolist()))
    # names by code: x.example 0, y.example 1, z.example 2; distinct by the answer's text (two spellings of
    # one IPv6 address: two rows, as before); the unset element and the CNAME are no address
    assert got == [("a", 0, "192.0.2.1"), ("a", 0, "198.51.100.7"), ("b", 0, "192.0.2.1"),
                   ("b", 0, "2001:db8::1"), ("b", 0, "2001:db8::1")]
    from_lists = build_index(_frame(as_lists[:5])).resolutions
    from_arrow5 = build_index(_frame(arrow[:5])).resolutions
    pd.testing.assert_frame_equal(from_lists.reset_index(drop=True), from_arrow5.reset_index(drop=True))
