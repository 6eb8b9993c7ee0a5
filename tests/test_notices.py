"""Library warnings reach the person through one channel the CLI owns (cicd_audit.notices)."""

from cicd_audit import notices
from cicd_audit.recorder.drivers import pcap_replay


def test_a_library_warning_goes_to_the_sink_that_is_set(capsys):
    lines = []
    previous = notices.set_sink(lines.append)
    try:
        pcap_replay._warn_if_offloaded(bad=9, packets=10, validate_checksums=True)
    finally:
        notices.set_sink(previous)
    assert len(lines) == 1 and lines[0].startswith("cicd-audit: warning: 9 of 10 packets had bad checksums")
    assert capsys.readouterr().err == ""


def test_by_default_a_notice_is_one_line_on_stderr(capsys):
    notices.say("cicd-audit: warning: something")
    assert capsys.readouterr().err == "cicd-audit: warning: something\n"


def test_setting_no_sink_goes_back_to_stderr(capsys):
    notices.set_sink(lambda line: None)
    notices.set_sink(None)
    notices.say("back")
    assert capsys.readouterr().err == "back\n"


def test_a_notice_cannot_drive_the_terminal(capsys):
    """A session name or a capture's text can reach a notice: escapes arrive as visible text."""
    notices.say("cicd-audit agent: session \x1b]0;owned\x07job1\u202e was left open")
    err = capsys.readouterr().err
    assert err == "cicd-audit agent: session \\x1b]0;owned\\x07job1\\u202e was left open\n"
