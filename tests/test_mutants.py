"""The mutation driver's scores (tests/mutants.py), read from a mutmut .meta file."""

from __future__ import annotations

import json
from pathlib import Path

from mutants import score_lines, scores


def test_scores_count_only_the_mutants_in_scope_and_a_pytest_error_as_a_kill(
    tmp_path: Path,
) -> None:
    meta = tmp_path / "orchestration" / "contract.py.meta"
    meta.parent.mkdir()
    codes = {
        "orchestration.contract.xǁPluginContractǁdeclarative__mutmut_1": 1,
        "orchestration.contract.xǁPluginContractǁdeclarative__mutmut_2": 3,
        "orchestration.contract.xǁPluginContractǁdeclarative__mutmut_3": 0,
        "orchestration.contract.xǁPluginContractǁstart_command__mutmut_1": 33,
        "orchestration.contract.x_ask__mutmut_1": 0,  # out of scope
    }
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    assert scores(["contract", "config"], tmp_path) == {"contract": 50.0, "config": 0.0}
    lines = score_lines(["contract"], tmp_path)
    assert lines[1].split() == ["contract", "2", "4", "50%", "exit", "33:", "1"]
    assert lines[-1] == "orchestration.contract.xǁPluginContractǁdeclarative__mutmut_3"


def test_a_module_in_a_package_is_read_from_its_package_folder(tmp_path: Path) -> None:
    meta = tmp_path / "orchestration" / "kinds" / "js.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {
        "orchestration.kinds.js.xǁJavaScriptǁprocess_name__mutmut_1": 1,
        "orchestration.kinds.js.xǁJavaScriptǁprocess_name__mutmut_2": 0,
    }
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    assert scores(["kinds.js"], tmp_path) == {"kinds.js": 50.0}
