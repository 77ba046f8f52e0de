"""`send`'s output flags: neither means "a table on a terminal, JSON lines otherwise"."""

from __future__ import annotations

import pytest

from intercom_sidecar.__main__ import _parser


@pytest.mark.parametrize(("flags", "as_json"), [([], None), (["--json"], True), (["--table"], False)])
def test_output_flags(flags: list[str], as_json: bool | None) -> None:
    assert _parser().parse_args(["send", *flags]).json is as_json


def test_json_and_table_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["send", "--json", "--table"])
    assert "not allowed with argument" in capsys.readouterr().err
