"""The ../shared locator fails, never skips, when data is missing."""

import pytest
from shared_data import SHARED, shared


def test_present_data_is_found():
    assert shared("zeek-oracle", "wikipedia", "trace.pcap").is_file()


def test_missing_data_fails_the_test_with_its_path():
    with pytest.raises(pytest.fail.Exception, match="no-such-capture.pcap"):
        shared("no-such-capture.pcap")
    assert SHARED.name == "shared"
