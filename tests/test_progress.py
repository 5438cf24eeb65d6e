"""Progress bars: redrawn in place on a terminal, plain lines in a log file."""

from __future__ import annotations

import io

from signlang_jax import progress as progress_lib
from signlang_jax.progress import LineWriter, is_terminal, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_lines_not_carriage_returns(monkeypatch):
    monkeypatch.setattr(progress_lib, "LOG_INTERVAL", 0.0)  # a line for every redraw
    log = io.StringIO()
    for _ in progress(range(3), desc="videos", unit="video", file=log, position=2):
        pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b[" not in text
    lines = text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("videos:") for line in lines)
    assert "3/3" in lines[-1] and text.endswith("\n")


def test_a_log_file_gets_a_line_every_interval_at_most():
    log = io.StringIO()
    with progress(total=1000, file=log) as bar:  # LOG_INTERVAL (10 s) between lines
        for _ in range(1000):
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) <= 2 and "1000/1000" in lines[-1]  # the start and the final state


def test_a_terminal_keeps_the_redrawn_bar():
    term = Terminal()
    assert is_terminal(term) and not is_terminal(io.StringIO())
    for _ in progress(range(3), file=term, mininterval=0):
        pass
    assert "\r" in term.getvalue()


def test_line_writer_drops_blank_redraws_and_cursor_moves():
    out = io.StringIO()
    writer = LineWriter(out)
    writer.write("\r  a: 1/3  \x1b[A\r          \r\n")
    writer.write("\rb: 2/3")
    assert out.getvalue() == "  a: 1/3\nb: 2/3\n"
