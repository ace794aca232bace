"""devtools.reports.write_section: the one writer of docs/benchmarks.md."""

from devtools.reports import HEADER, write_section


def test_benchmark_sections_are_replaced_independently(tmp_path):
    path = tmp_path / "bench.md"
    write_section(path, "a", "A1")
    write_section(path, "b", "B1")
    write_section(path, "a", "A2")
    text = path.read_text()
    assert text.startswith(HEADER)
    assert "A2" in text and "B1" in text and "A1" not in text and text.count("<!-- a:begin -->") == 1
    assert text.index("<!-- a:begin -->") < text.index("<!-- b:begin -->")  # replaced in place


def test_it_keeps_the_text_around_a_section(tmp_path):
    path = tmp_path / "bench.md"
    path.write_text("# Mine\n\nintro\n\n<!-- x:begin -->\nold\n<!-- x:end -->\n\noutro\n")
    write_section(path, "x", "\n## X\n\nnew\n")
    assert path.read_text() == "# Mine\n\nintro\n\n<!-- x:begin -->\n## X\n\nnew\n<!-- x:end -->\n\noutro\n"
