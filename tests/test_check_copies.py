"""scripts/check_copies.py: the self-contained model files' copied blocks and the bundled folders' code files."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_copies.py"
spec = importlib.util.spec_from_file_location("check_copies", SCRIPT)
check_copies = sys.modules["check_copies"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
spec.loader.exec_module(check_copies)


def test_the_copies_in_this_checkout_equal_their_sources():
    assert check_copies.check(ROOT) == []
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    marked = {(c.path.name, c.name) for p in (ROOT / "instrument_classifier" / "modeling").glob("*.py")
              for c in check_copies.find_copies(p)}
    # the models' shared code is marked in each file that repeats it
    for name in ("InstrumentClassifierOutput", "classify_long_input", "instrument_loss", "check_features"):
        assert {("modeling_instrument_transformer.py", name), ("modeling_instrument_musicnn.py", name),
                ("modeling_instrument_yamnet.py", name)} <= marked
    for name in ("TAXONOMY_LABELS", "_fill_labels", "_validate_context"):
        copies = {("configuration_instrument_transformer.py", name), ("configuration_instrument_musicnn.py", name),
                  ("configuration_instrument_yamnet.py", name)}
        assert copies <= marked


@pytest.fixture
def checkout(tmp_path) -> Path:
    """The code files check_copies reads, copied to a temporary checkout."""
    package = ROOT / "instrument_classifier"
    for path in [*package.glob("modeling/*.py"), *package.glob("pretrained/*/*.py")]:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    assert check_copies.check(tmp_path) == []
    return tmp_path


def test_a_changed_marked_block_fails_the_check_and_fix_restores_it(checkout):
    path = checkout / "instrument_classifier" / "modeling" / "modeling_instrument_musicnn.py"
    original = path.read_text()
    edited = original.replace("    voting = torch.full(", "    voting = 1 + torch.full(", 1)
    assert edited != original
    path.write_text(edited)
    problems = check_copies.check(checkout)
    assert any("modeling_instrument_musicnn.py" in p and "classify_long_input differs" in p for p in problems)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(checkout)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "classify_long_input" in proc.stdout and "make fix-copies" in proc.stderr
    check_copies.check(checkout, fix=True)
    # the package's file is fixed first, then the bundled folder's copy of it is compared with the fixed file
    assert path.read_text() == original
    assert check_copies.check(checkout) == []


def test_a_changed_source_reaches_its_copies_with_fix(checkout):
    modeling = checkout / "instrument_classifier" / "modeling"
    source = modeling / "modeling_instrument_cnn.py"
    text = source.read_text()
    source.write_text(text.replace('"""Output of the instrument classifiers.', '"""Output of the models.'))
    problems = check_copies.check(checkout)
    # transformer, musicnn, yamnet and efficientat
    assert sum("InstrumentClassifierOutput differs" in p for p in problems) == 4
    assert any(p.startswith("instrument_classifier/pretrained/cnn/modeling_instrument_cnn.py") for p in problems)
    check_copies.check(checkout, fix=True)
    assert check_copies.check(checkout) == []
    for name in ("modeling_instrument_transformer.py", "modeling_instrument_musicnn.py",
                 "modeling_instrument_yamnet.py", "modeling_instrument_efficientat.py"):
        assert '"""Output of the models.' in (modeling / name).read_text()
    assert '"""Output of the models.' in (checkout / "instrument_classifier/pretrained/musicnn/"
                                          "modeling_instrument_musicnn.py").read_text()


def test_a_copied_method_follows_its_source_with_the_replacements(checkout):
    """A method marked ``# Copied from ...<Class>.<method> with A->B`` (indented, above the method or its
    decorators) is checked and fixed like a top-level block."""
    modeling = checkout / "instrument_classifier" / "modeling"
    source = modeling / "modeling_instrument_yamnet.py"
    old, new = '"""Round the YAMNet weights to', '"""Round the YAMNet weights (only) to'
    source.write_text(source.read_text().replace(old, new))
    problems = check_copies.check(checkout)
    assert any("modeling_instrument_efficientat.py" in p and "round_backbone_to_storage differs" in p
               for p in problems)
    check_copies.check(checkout, fix=True)
    assert check_copies.check(checkout) == []
    copy = (modeling / "modeling_instrument_efficientat.py").read_text()
    assert '"""Round the EfficientAT weights (only) to' in copy and "self.efficientat.state_dict()" in copy
    # a marker above a statement inside a method is refused
    text = copy.replace("        with torch.no_grad():\n            for tensor in self.efficientat",
                        "        # Copied from instrument_classifier.modeling.modeling_instrument_yamnet.SILENCE\n"
                        "        with torch.no_grad():\n            for tensor in self.efficientat", 1)
    (modeling / "modeling_instrument_efficientat.py").write_text(text)
    with pytest.raises(ValueError, match="not directly above"):
        check_copies.check(checkout)


def test_a_changed_model_folder_file_fails_the_check(checkout):
    copy = checkout / "instrument_classifier" / "pretrained" / "cnn" / "feature_extraction_instrument.py"
    copy.write_text(copy.read_text() + "\n# edited by hand\n")
    assert check_copies.check(checkout) == [
        "instrument_classifier/pretrained/cnn/feature_extraction_instrument.py: differs from "
        "instrument_classifier/modeling/feature_extraction_instrument.py"
    ]
    check_copies.check(checkout, fix=True)
    original = checkout / "instrument_classifier" / "modeling" / "feature_extraction_instrument.py"
    assert copy.read_bytes() == original.read_bytes()


def test_replacements_and_malformed_markers(checkout):
    modeling = checkout / "instrument_classifier" / "modeling"
    source = check_copies.expected_block(
        check_copies.Copy(modeling, 0, 0, 0, "modeling_instrument_cnn", "InstrumentTimePooling", []), modeling)
    renamed = "\n".join(source).replace("InstrumentTimePooling", "FooPooling").replace("frame logits", "logits")
    marker = ("# Copied from instrument_classifier.modeling.modeling_instrument_cnn.InstrumentTimePooling "
              "with InstrumentTimePooling->FooPooling, frame logits->logits")
    extra = modeling / "modeling_foo.py"
    extra.write_text(f"from torch import nn\n\n\n{marker}\n{renamed}\n")
    assert check_copies.check(checkout) == []
    extra.write_text(f"from torch import nn\n\n\n{marker}\n" + "\n".join(source) + "\n")  # not renamed
    assert check_copies.check(checkout) == ["instrument_classifier/modeling/modeling_foo.py:4: InstrumentTimePooling "
                                            "differs from instrument_classifier.modeling.modeling_instrument_cnn."
                                            "InstrumentTimePooling"]
    extra.write_text("# Copied from modeling_instrument_cnn.InstrumentTimePooling\nclass A:\n    pass\n")
    with pytest.raises(ValueError, match="a marker must read"):
        check_copies.check(checkout)
    cnn = "# Copied from instrument_classifier.modeling.modeling_instrument_cnn"
    extra.write_text(f"{cnn}.Nothing\nclass A:\n    pass\n")
    with pytest.raises(ValueError, match="defines no Nothing"):
        check_copies.check(checkout)
    extra.write_text(f"{cnn}.check_features\n\nX = 1\n")
    with pytest.raises(ValueError, match="not directly above"):
        check_copies.check(checkout)
