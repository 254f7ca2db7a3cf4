"""The one `module:Name` resolver every config field that names user code goes through."""

import pytest

from gpbt.engines.trainable import load_trainable
from gpbt.imports import ImportSpecError, import_object


def test_resolves_a_module_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_mod_for_import_test.py").write_text(
        "class Outer:\n    class Inner:\n        x = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_object("my_mod_for_import_test:Outer.Inner", "agent", "'m:C'").x == 3


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("no_colon", "agent = 'no_colon': write it as 'module:Name', e.g. 'm:C'"),
        ("surely_missing_mod_xyz:C", "agent = 'surely_missing_mod_xyz:C': no module named"),
        (
            "gpbt.core.space:Nope",
            "agent = 'gpbt.core.space:Nope': module 'gpbt.core.space' has no attribute 'Nope'",
        ),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(spec, needle):
    with pytest.raises(ImportSpecError) as err:
        import_object(spec, "agent", "'m:C'")
    assert needle in str(err.value)


def test_the_local_engine_resolves_trainables_through_it():
    with pytest.raises(ImportSpecError, match="trainable = 'gpbt.core.space:Nope'"):
        load_trainable("gpbt.core.space:Nope")
    with pytest.raises(ValueError, match="must be a class"):
        load_trainable("gpbt.core.space:to_plain")
