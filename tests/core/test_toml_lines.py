"""Where each key of a TOML text is defined: the scanner behind stack files' line numbers."""

from __future__ import annotations

import textwrap

from digi_core.toml_lines import key_lines


def test_key_lines_are_not_fooled_by_strings_and_arrays() -> None:
    text = textwrap.dedent(
        '''\
        name = "shop" # [services.fake]
        [services.web]
        start = """
        [services.fake]
        port = 1
        \\"""
        """
        branch = 'a = b'
        ports = [
          1, # ]
          "]",
          { inner = 2 },
        ]
        "quoted.key" = 1
        a.b . c = 2
        [[services.web.list]]
        x = 1
        [[services.web.list]]
        x = 2
        [services.web.list.sub]
        y = 3
        '''
    )
    lines = key_lines(text)
    assert lines[("name",)] == 1
    assert lines[("services", "web")] == 2
    assert lines[("services", "web", "start")] == 3
    assert ("services", "fake") not in lines
    assert lines[("services", "web", "branch")] == 8
    assert lines[("services", "web", "ports")] == 9
    assert lines[("services", "web", "ports", 1)] == 11
    assert lines[("services", "web", "ports", 2, "inner")] == 12
    assert lines[("services", "web", "quoted.key")] == 14
    assert lines[("services", "web", "a", "b", "c")] == 15
    assert lines[("services", "web", "list", 1, "x")] == 19
    assert lines[("services", "web", "list", 1, "sub", "y")] == 21
