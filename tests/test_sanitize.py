from hypothesis import given, strategies as st

from pltui.sanitize import clean, clean_line, is_clean


def test_escapes_and_controls_are_removed():
    hostile = "ok\x1b[2J\x1b]0;title\x07\x1b]8;;http://x\x1b\\link\x9b31mred\x00\x7f\x85end"
    out = clean_line(hostile)
    assert out.startswith("ok") and "link" in out and out.endswith("end")
    assert is_clean(out) and "\x1b" not in out and "\x9b" not in out


def test_newlines_kept_only_when_asked():
    assert clean("a\nb", newlines=True) == "a\nb"
    assert "\n" not in clean_line("a\nb")


def test_length_capped():
    assert len(clean_line("x" * 10000, 50)) == 50


def test_bytes_decoded_safely():
    assert clean_line(b"\xff\xfeok") .endswith("ok")


@given(st.one_of(st.text(), st.binary()))
def test_output_never_holds_control_bytes(data):
    out = clean(data, newlines=True)
    assert is_clean(out)


def test_line_breaks_become_spaces_in_a_single_line():
    assert clean_line("monitor started (pid 5)\n") == "monitor started (pid 5)"
    assert clean_line("a\nb\r\nc") == "a b c"
