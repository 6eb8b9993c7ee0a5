"""`cicd-audit analyze` on logs over the reader's limits: exit 2, one line naming the limit, no traceback (pure tier)."""

import gzip

from click.testing import CliRunner

from cicd_audit.analyzers.cli import EXIT_ERROR, analyze
from cicd_audit.zeeklog.limits import DEFAULT_LIMITS

HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
    "#fields\tts\tuid\tquery\n#types\ttime\tstring\tstring\n"
)


def _run(session):
    return CliRunner().invoke(analyze, [str(session)])


def _assert_one_line_error(result, limit):
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and limit in lines[0] and "Traceback" not in result.output, result.output


def test_line_over_the_default_limit(tmp_path):
    query = "a" * (DEFAULT_LIMITS.max_line_bytes + 1)
    (tmp_path / "dns.log").write_text(HEADER + f"1.0\tC1\t{query}\n")
    _assert_one_line_error(_run(tmp_path), "max_line_bytes=%d" % DEFAULT_LIMITS.max_line_bytes)


def test_gzip_bomb_over_the_default_ratio(tmp_path):
    size = DEFAULT_LIMITS.gzip_ratio_floor_bytes + (1 << 20)  # newlines: blank lines, a valid log if read
    (tmp_path / "dns.log.gz").write_bytes(gzip.compress(HEADER.encode() + b"\n" * size, compresslevel=9))
    _assert_one_line_error(_run(tmp_path), "max_gzip_ratio=%d" % DEFAULT_LIMITS.max_gzip_ratio)
